"""Asset checks shown in the UI: every table of an experiment against its declaration, value
domains, consistency, and experiment-wide rules (see ``validation.py`` for the rules)."""

from collections import defaultdict

import dagster as dg

from mlruns_assets.runtime.settings import Kind
from mlruns_assets.source.tracking import ExperimentRef
from mlruns_assets.warehouse.catalog import asset_of_table, tables_for_kind
from mlruns_assets.warehouse.duckdb_writer import DuckDBWarehouse
from mlruns_assets.warehouse.validation import ERROR, WARN, CheckOutcome, database_checks

# Experiment-wide rules: (tables whose asset shows the check, first held one wins; severity).
EXPERIMENT_CHECKS = {
    "run_names_unique": (("runs",), WARN),
    "synthetic_runs_absent": (("runs",), ERROR),
    "no_original_subject_codes": (("predictions", "preprocessed_signals"), ERROR),
}


def _shown_on(tables: tuple[str, ...], asset_of: dict[str, str]) -> str | None:
    """The asset that shows an experiment-wide check: the one holding its first table."""
    return next((asset_of[t] for t in tables if t in asset_of), None)


def table_check_name(table: str) -> str:
    """The check of one table, shown on the asset that holds the table."""
    return f"{table}_is_valid"


def check_results(slug: str, kind: Kind, outcomes: list[CheckOutcome]) -> list[dg.AssetCheckResult]:
    """Fold check outcomes into one result per table plus one per experiment-wide rule."""
    asset_of = asset_of_table(kind)
    by_table: dict[str, list[CheckOutcome]] = defaultdict(list)
    named = {o.check: o for o in outcomes if o.check in EXPERIMENT_CHECKS}
    for o in outcomes:
        if o.check not in EXPERIMENT_CHECKS:
            by_table[o.table].append(o)  # bounded: one outcome per check
    results = []  # bounded: one result per table and per experiment-wide check
    for table, asset in asset_of.items():
        failed = [o for o in by_table[table] if not o.passed]
        results.append(
            dg.AssetCheckResult(
                asset_key=[slug, asset],
                check_name=table_check_name(table),
                passed=not failed,
                severity=dg.AssetCheckSeverity.ERROR
                if any(o.severity == ERROR for o in failed)
                else dg.AssetCheckSeverity.WARN,
                metadata={
                    "checks_run": len(by_table[table]),
                    "failures": "\n".join(f"{o.check}: {o.detail}" for o in failed) or "none",
                },
            )
        )
    for check, (tables, severity) in EXPERIMENT_CHECKS.items():
        shown_on = _shown_on(tables, asset_of)
        if shown_on is None:
            continue
        outcome = named.get(check)
        # The rules report every check they apply, "not applicable" included: a missing
        # outcome means the check did not run, which is no pass.
        results.append(
            dg.AssetCheckResult(
                asset_key=[slug, shown_on],
                check_name=check,
                passed=outcome.passed if outcome else False,
                severity=dg.AssetCheckSeverity(severity),
                metadata={
                    "detail": (outcome.detail or "ok") if outcome else "not evaluated",
                },
            )
        )
    return results


def table_check_specs(experiment: ExperimentRef, kind: Kind) -> list[dg.AssetCheckSpec]:
    """The checks shown on each asset of an experiment: one per table it holds, plus the
    experiment-wide rules on the asset of the table they read."""
    slug = experiment.slug
    asset_of = asset_of_table(kind)
    return [
        dg.AssetCheckSpec(
            table_check_name(table),
            asset=dg.AssetKey([slug, asset]),
            blocking=True,
            description=f"`{table}`: declared columns, types and nullability; value domains; "
            "row counts.",
        )
        for table, asset in asset_of.items()
    ] + [
        dg.AssetCheckSpec(check, asset=dg.AssetKey([slug, asset]), blocking=severity == ERROR)
        for check, (tables, severity) in EXPERIMENT_CHECKS.items()
        if (asset := _shown_on(tables, asset_of)) is not None
    ]


def evaluate_checks(
    warehouse: DuckDBWarehouse, slug: str, kind: Kind, subject_map_configured: bool
) -> list[dg.AssetCheckResult]:
    """Every check of the experiment's tables, read from the database in one pass.

    The extraction step yields these after its partitions: its table outputs are committed per
    partition rather than yielded, so a separate check step would be skipped by Dagster.
    """
    specs = tables_for_kind(kind)
    if not warehouse.exists():
        outcomes = [
            CheckOutcome("database_exists", s.name, ERROR, False, "no database yet") for s in specs
        ]
    else:
        with warehouse.get_connection(read_only=True) as conn:
            outcomes = database_checks(
                conn, slug, specs, subject_map_configured=subject_map_configured
            )
    return check_results(slug, kind, outcomes)
