"""``mlruns-assets check``: every asset check against an existing database, as a table."""

from __future__ import annotations

import re
from pathlib import Path

import click
import yaml

from mlruns_assets.cli.options import database_option
from mlruns_assets.runtime.errors import UsageError
from mlruns_assets.runtime.settings import ORIGINAL_CODE_PATTERN, Settings
from mlruns_assets.runtime.warehouse_url import WarehouseUrl, parse_warehouse
from mlruns_assets.warehouse.validation import ERROR, CheckOutcome

REGISTRY_COLUMNS = ("classifier", "featurization", "imputation_method", "outlier_method")


def load_registry(path: Path) -> dict[str, set[str]]:
    """A YAML file listing the allowed method names per column (e.g. ``classifier: [...]``)."""
    data = yaml.safe_load(path.read_text()) or {}
    return {c: {str(v) for v in data[c]} for c in REGISTRY_COLUMNS if c in data}


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


def _warehouse_url(database: str, warehouse: str | None) -> WarehouseUrl:
    """``--warehouse`` parsed (else the file ``--db``); a bad one is a usage error."""
    try:
        return parse_warehouse(warehouse or f"duckdb:{database}")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@click.command(
    "check",
    epilog="Example: mlruns-assets check --db demo/results.duckdb --subject-map "
    "demo/store/subject_map.csv\n\nExit codes: 0 no ERROR check failed, 1 an ERROR check "
    "failed, 2 bad arguments.",
)
@click.option("--db", "database", metavar="PATH", help="the results database")
@click.option(
    "--warehouse",
    metavar="URL",
    help="the results warehouse instead of --db: duckdb:PATH or ducklake:postgres:<libpq "
    "connection string>?data_path=<folder or s3://...>",
)
@click.option("--duckdb-extensions", metavar="FOLDER", help=Settings.help("duckdb_extensions"))
@click.option(
    "--subject-map",
    metavar="FILE",
    help="the subject map the database was written with: no original code may remain",
)
@click.option(
    "--anonymized",
    is_flag=True,
    help="the database was written with a subject map (when the map itself is not at hand): "
    "no original code may remain",
)
@click.option(
    "--original-pattern",
    default=ORIGINAL_CODE_PATTERN,
    show_default=True,
    help="regular expression of original subject codes",
)
@click.option("--registry", metavar="FILE", help="YAML of allowed method names per column")
def check_command(
    database: str | None,
    warehouse: str | None,
    duckdb_extensions: str | None,
    subject_map: str | None,
    anonymized: bool,
    original_pattern: str,
    registry: str | None,
) -> int:
    """Run every asset check (declared schemas, value domains, consistency, experiment-wide
    rules) against an existing results database and print them as a table."""
    from mlruns_assets.warehouse.duckdb_writer import DuckDBWarehouse, database_file_problem
    from mlruns_assets.warehouse.validation import check_database

    url = _warehouse_url(database_option(database, warehouse), warehouse)
    if not url.is_ducklake:
        db = Path(url.path)
        if not db.is_file():
            raise UsageError(f"database {db} does not exist")
        if problem := database_file_problem(db):
            raise UsageError(f"database {db}: {problem}")
    try:
        re.compile(original_pattern)
    except re.error as exc:
        raise UsageError(f"--original-pattern {original_pattern!r}: {exc}") from None
    allowed = None
    if registry:
        try:
            allowed = load_registry(Path(registry))
        except (OSError, yaml.YAMLError, TypeError) as exc:
            raise UsageError(f"registry {registry}: {exc}") from None
    lake = DuckDBWarehouse(
        database=url.path, warehouse=warehouse or "", duckdb_extensions=duckdb_extensions
    )
    with lake.get_connection(read_only=True) as conn:
        results = check_database(
            conn,
            subject_map_configured=bool(subject_map or anonymized),
            original_pattern=original_pattern,
            registry=allowed,
        )
    for line in format_results(results):
        click.echo(line)
    failed = any(not o.passed and o.severity == ERROR for _, o in results)
    return 1 if failed else 0
