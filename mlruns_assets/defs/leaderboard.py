"""The leaderboard asset of a classification experiment: every committed run ranked by AUROC, as
the ``leaderboard`` table and as a Markdown table in the UI (the work: ``warehouse.leaderboard``).

It is unpartitioned and downstream of the STRATOS tables; ``defs.automation`` says when the
daemon rebuilds it.
"""

from typing import Any

import dagster as dg

from mlruns_assets.defs.automation import LEADERBOARD_CONDITION
from mlruns_assets.figures.markdown import leaderboard_markdown
from mlruns_assets.source.tracking import ExperimentRef
from mlruns_assets.warehouse.catalog import STRATOS
from mlruns_assets.warehouse.duckdb_writer import DuckDBWarehouse
from mlruns_assets.warehouse.leaderboard import (
    LEADERBOARD,
    LEADERBOARD_CHECKS,
    leaderboard_checks,
    read_leaderboard,
    write_leaderboard,
)
from mlruns_assets.warehouse.validation import ERROR

TOP_IN_UI = 25


def leaderboard_key(experiment: ExperimentRef) -> dg.AssetKey:
    return dg.AssetKey([experiment.slug, LEADERBOARD.name])


def leaderboard_job_name(experiment: ExperimentRef) -> str:
    return f"{experiment.slug}_leaderboard_job"


def build_leaderboard_asset(experiment: ExperimentRef) -> dg.AssetsDefinition:
    """The leaderboard asset of one classification experiment, with its checks."""
    slug = experiment.slug
    key = leaderboard_key(experiment)

    @dg.asset(
        key=key,
        deps=[dg.AssetKey([slug, STRATOS.name])],
        group_name=slug,
        kinds={"duckdb"},
        automation_condition=LEADERBOARD_CONDITION,
        description=(
            f"Every run of MLflow experiment '{experiment.name}' ranked by AUROC: name, "
            "classifier, imputation and outlier methods (from the run name), AUROC with its 95 % "
            "CI, Brier and scaled Brier, calibration slope and intercept, O:E, net benefit at "
            "5/10/20 %, n and events, and the verdict of the run's checks. The top "
            f"{TOP_IN_UI} are shown on the latest materialization; all are in table "
            f"`{slug}.leaderboard`. Rebuilt after each extraction."
        ),
        metadata={"schema": slug, "tables": LEADERBOARD.name},
        check_specs=[
            dg.AssetCheckSpec(name, asset=key, description=text, blocking=severity == ERROR)
            for name, severity, text in LEADERBOARD_CHECKS
        ],
    )
    def leaderboard(
        context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse
    ) -> dg.MaterializeResult:  # type: ignore[type-arg]  # dagster rejects [None] with checks
        waiting = lambda s: context.log.info(f"waiting {s:.0f} s for the database lock")  # noqa: E731
        with warehouse.get_connection(on_wait=waiting) as conn:
            written = write_leaderboard(conn, slug)
            top = read_leaderboard(conn, slug, limit=TOP_IN_UI)
            outcomes = leaderboard_checks(conn, slug)
        return dg.MaterializeResult(
            metadata={
                "leaderboard": dg.MetadataValue.md(leaderboard_markdown(top, written.rows)),
                "runs": dg.MetadataValue.int(written.rows),
                "runs_not_passing": dg.MetadataValue.int(written.not_passing),
                "table": dg.MetadataValue.text(f"{slug}.{LEADERBOARD.name}"),
            },
            check_results=[
                dg.AssetCheckResult(
                    asset_key=key,
                    check_name=o.check,
                    passed=o.passed,
                    severity=dg.AssetCheckSeverity(o.severity),
                    metadata={"detail": o.detail or "ok"},
                )
                for o in outcomes
            ],
        )

    return leaderboard


def build_leaderboard_job(experiment: ExperimentRef, asset: dg.AssetsDefinition) -> Any:
    # Any: define_asset_job returns a type that dagster does not export.
    """The job that rebuilds one experiment's leaderboard (the headless refresh runs it)."""
    return dg.define_asset_job(
        name=leaderboard_job_name(experiment),
        selection=dg.AssetSelection.assets(asset),
        executor_def=dg.in_process_executor,
    )
