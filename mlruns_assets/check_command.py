"""``mlruns-assets check``: every asset check against an existing database, as a table."""

from __future__ import annotations

from pathlib import Path

import yaml

from mlruns_assets.extraction import CLASSIFICATION, GENERIC, IMPUTATION, tables_for_kind
from mlruns_assets.signals_schema import PREPROCESSED_SIGNALS
from mlruns_assets.stratos_schema import ESSENTIAL_METRICS
from mlruns_assets.subjects import DEFAULT_ORIGINAL_PATTERN
from mlruns_assets.validation import ERROR, CheckOutcome, database_checks
from mlruns_assets.warehouse import connect_with_retry

REGISTRY_COLUMNS = ("classifier", "featurization", "imputation_method", "outlier_method")


def load_registry(path: Path) -> dict[str, set[str]]:
    """A YAML file listing the allowed method names per column (e.g. ``classifier: [...]``)."""
    data = yaml.safe_load(path.read_text()) or {}
    return {c: {str(v) for v in data[c]} for c in REGISTRY_COLUMNS if c in data}


def check_database(
    database: Path,
    *,
    subject_map_configured: bool,
    original_pattern: str = DEFAULT_ORIGINAL_PATTERN,
    registry: dict[str, set[str]] | None = None,
) -> list[tuple[str, CheckOutcome]]:
    """(schema, outcome) for every check of every experiment schema in the database."""
    conn = connect_with_retry(str(database), read_only=True)
    try:
        schemas = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT table_schema FROM information_schema.tables "
                "WHERE table_name = 'runs' ORDER BY 1"
            ).fetchall()
        ]
        results: list[tuple[str, CheckOutcome]] = []
        for schema in schemas:
            present = {
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
                    [schema],
                ).fetchall()
            }
            kind = (
                CLASSIFICATION
                if ESSENTIAL_METRICS.name in present
                else IMPUTATION
                if PREPROCESSED_SIGNALS.name in present
                else GENERIC
            )
            outcomes = database_checks(
                conn,
                schema,
                tables_for_kind(kind),
                subject_map_configured=subject_map_configured,
                original_pattern=original_pattern,
                registry=registry,
            )
            results += [
                (schema, o) for o in outcomes
            ]  # bounded: a few dozen checks per experiment schema
        return results
    finally:
        conn.close()


def format_results(results: list[tuple[str, CheckOutcome]]) -> list[str]:
    """A fixed-width table: status, severity, schema.table, check, detail."""
    lines = [f"{'status':6}  {'sev':5}  {'table':40}  {'check':40}  detail"]
    for schema, o in results:
        status = "ok" if o.passed else "FAIL"
        lines.append(  # bounded: one line per check
            f"{status:6}  {o.severity:5}  {schema + '.' + o.table:40}  {o.check:40}  {o.detail}"
        )
    failed_errors = sum(1 for _, o in results if not o.passed and o.severity == ERROR)
    failed_warns = sum(1 for _, o in results if not o.passed and o.severity != ERROR)
    lines.append(f"{len(results)} checks: {failed_errors} ERROR failed, {failed_warns} WARN failed")
    return lines
