"""The curves asset of a classification experiment: per run (same partitions as the STRATOS
tables), its four pictures as Markdown images on the partition's materialization.

Rendering is not part of the extraction: four matplotlib figures cost several times a
partition's extraction, so they are drawn here, after it, from the database: the UI's daemon
draws a partition once its STRATOS partition has been materialized (again; ``defs.automation``),
``quickstart`` draws them for the demo.
"""

import time
from collections.abc import Iterator
from typing import Any

import dagster as dg

from mlruns_assets.defs.automation import CURVES_CONDITION
from mlruns_assets.defs.partitions import run_partitions
from mlruns_assets.figures.curve_data import CURVES, read_run_curves
from mlruns_assets.figures.markdown import image_markdown
from mlruns_assets.source.partition_keys import run_id_of
from mlruns_assets.source.tracking import ExperimentRef
from mlruns_assets.warehouse.catalog import STRATOS
from mlruns_assets.warehouse.duckdb_writer import DuckDBWarehouse

CURVES_ASSET = "stratos_curves"
CURVES_METADATA_KEY = "curves"
# Partitions a curves run draws: 0.2-0.4 s each, so 50 already pay a run's start-up, and a run
# reading the database this long leaves room for the extraction's writer.
CURVES_PER_RUN = 50


def curves_key(experiment: ExperimentRef) -> dg.AssetKey:
    return dg.AssetKey([experiment.slug, CURVES_ASSET])


def curves_job_name(experiment: ExperimentRef) -> str:
    return f"{experiment.slug}_curves_job"


def curves_metadata(pngs: dict[str, bytes], seconds: float) -> dict[str, dg.MetadataValue]:
    """The four pictures as one Markdown value (one "Show Markdown" in the UI shows them all,
    two by two; four values would each need a click), and what they cost."""
    images = [image_markdown(title, pngs[name]) for name, title in CURVES]
    return {
        CURVES_METADATA_KEY: dg.MetadataValue.md(
            f"{images[0]} {images[1]}\n\n{images[2]} {images[3]}"
        ),
        "render_s": dg.MetadataValue.float(round(seconds, 3)),
        "png_kb": dg.MetadataValue.float(round(sum(map(len, pngs.values())) / 1000, 1)),
    }


def build_curves_asset(experiment: ExperimentRef) -> dg.AssetsDefinition:
    """The partitioned curves asset of one classification experiment."""
    slug = experiment.slug
    key = curves_key(experiment)

    @dg.multi_asset(
        name=f"{slug}_curves",
        specs=[
            dg.AssetSpec(
                key=key,
                deps=[dg.AssetKey([slug, STRATOS.name])],
                description=(
                    f"The STRATOS pictures of each run of MLflow experiment '{experiment.name}', "
                    "drawn from its tables: calibration curve with its 95 % CI band (Wilson, per "
                    "bin) and the ideal line; decision curve with treat-all and treat-none; ROC "
                    "with the AUROC's CI and a 95 % bootstrap band; predicted-probability "
                    "histograms by outcome. Open a partition's latest materialization to see "
                    "them (`curves`: Show Markdown). Rendered after each extraction of the run."
                ),
                skippable=True,
                group_name=slug,
                kinds={"duckdb"},
                automation_condition=CURVES_CONDITION,
                metadata={"schema": slug, "pictures": ", ".join(name for name, _ in CURVES)},
            )
        ],
        partitions_def=run_partitions(experiment),
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=CURVES_PER_RUN),
        can_subset=False,
    )
    def curves(
        context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse
    ) -> Iterator[dg.AssetMaterialization]:
        # matplotlib (~0.5 s to import) only where pictures are drawn: every command that
        # builds the definitions (extract, check, rekey) would pay it otherwise.
        from mlruns_assets.figures.plots import render_curves

        missing = []  # bounded: partitions of this step (<= 50)
        for partition in context.partition_keys:
            # The lock is held only to read the run's rows, never while drawing.
            with warehouse.get_connection(read_only=True) as conn:
                data = read_run_curves(conn, slug, run_id_of(partition))
            if data is None:
                missing.append(partition)
                context.log.error(f"run {partition}: no STRATOS rows in the database")
                continue
            started = time.perf_counter()
            pngs = render_curves(data)
            yield dg.AssetMaterialization(
                asset_key=key,
                partition=partition,
                metadata={
                    "run_name": dg.MetadataValue.text(data.run_name or ""),
                    **curves_metadata(pngs, time.perf_counter() - started),
                },
            )
        if missing:
            raise dg.Failure(
                description=f"{len(missing)} of {len(context.partition_keys)} runs have no "
                "STRATOS rows (extract them first): " + ", ".join(missing),
                allow_retries=False,
            )

    return curves


def build_curves_job(experiment: ExperimentRef, asset: dg.AssetsDefinition) -> Any:
    # Any: define_asset_job returns a type that dagster does not export.
    """The job that renders one experiment's curves for a partition or a range."""
    return dg.define_asset_job(
        name=curves_job_name(experiment),
        selection=dg.AssetSelection.assets(asset),
        partitions_def=run_partitions(experiment),
        executor_def=dg.in_process_executor,
    )
