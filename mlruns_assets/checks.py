"""Asset checks shown in the UI: every table of an experiment against its declaration, value
domains, consistency, and experiment-wide rules (see ``validation.py`` for the rules)."""

from collections import defaultdict
from pathlib import Path

import dagster as dg

from mlruns_assets.tables import TableSpec
from mlruns_assets.tracking import ExperimentRef
from mlruns_assets.validation import ERROR, WARN, CheckOutcome, database_checks
from mlruns_assets.warehouse import DuckDBWarehouse

TABLE_CHECK = "table_is_valid"
EXPERIMENT_CHECKS = {
    "run_names_unique": ("runs", WARN),
    "synthetic_runs_absent": ("runs", ERROR),
    "no_original_subject_codes": ("predictions", ERROR),
}


def check_results(
    slug: str, specs: list[TableSpec], outcomes: list[CheckOutcome]
) -> list[dg.AssetCheckResult]:
    """Fold check outcomes into one result per table plus one per experiment-wide rule."""
    by_table: dict[str, list[CheckOutcome]] = defaultdict(list)
    named = {o.check: o for o in outcomes if o.check in EXPERIMENT_CHECKS}
    for o in outcomes:
        if o.check not in EXPERIMENT_CHECKS:
            by_table[o.table].append(o)  # bounded: one outcome per check
    results = []  # bounded: one result per table and per experiment-wide check
    for spec in specs:
        failed = [o for o in by_table[spec.name] if not o.passed]
        results.append(
            dg.AssetCheckResult(
                asset_key=[slug, spec.name],
                check_name=TABLE_CHECK,
                passed=not failed,
                severity=dg.AssetCheckSeverity.ERROR
                if any(o.severity == ERROR for o in failed)
                else dg.AssetCheckSeverity.WARN,
                metadata={
                    "checks_run": len(by_table[spec.name]),
                    "failures": "\n".join(f"{o.check}: {o.detail}" for o in failed) or "none",
                },
            )
        )
    for check, (table, severity) in EXPERIMENT_CHECKS.items():
        if table not in {s.name for s in specs}:
            continue
        outcome = named.get(check)
        results.append(
            dg.AssetCheckResult(
                asset_key=[slug, table],
                check_name=check,
                passed=outcome.passed if outcome else True,
                severity=dg.AssetCheckSeverity(severity),
                metadata={"detail": (outcome.detail if outcome else "") or "not applicable"},
            )
        )
    return results


def table_check_specs(experiment: ExperimentRef, specs: list[TableSpec]) -> list[dg.AssetCheckSpec]:
    """The checks shown on each table asset of an experiment."""
    slug = experiment.slug
    names = {s.name for s in specs}
    return [
        dg.AssetCheckSpec(
            TABLE_CHECK,
            asset=dg.AssetKey([slug, s.name]),
            blocking=True,
            description="Declared columns, types and nullability; value domains; row counts.",
        )
        for s in specs
    ] + [
        dg.AssetCheckSpec(check, asset=dg.AssetKey([slug, table]), blocking=severity == ERROR)
        for check, (table, severity) in EXPERIMENT_CHECKS.items()
        if table in names
    ]


def evaluate_checks(
    warehouse: DuckDBWarehouse, slug: str, specs: list[TableSpec], subject_map_configured: bool
) -> list[dg.AssetCheckResult]:
    """Every check of the experiment's tables, read from the database in one pass.

    The extraction step yields these after its partitions: its table outputs are committed per
    partition rather than yielded, so a separate check step would be skipped by Dagster.
    """
    if not Path(warehouse.database).exists():
        outcomes = [
            CheckOutcome("database_exists", s.name, ERROR, False, "no database yet") for s in specs
        ]
    else:
        with warehouse.get_connection(read_only=True) as conn:
            outcomes = database_checks(
                conn, slug, specs, subject_map_configured=subject_map_configured
            )
    return check_results(slug, specs, outcomes)
