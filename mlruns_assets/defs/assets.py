"""The extraction assets: per experiment, a few assets (``warehouse.catalog``), each holding
tables that change together, all filled by one step that reads each run's artifacts once.

A step covers one partition or a contiguous range of them (backfills, sensor runs, the headless
command). Each partition commits on its own and is recorded as materialized the moment its
transaction commits, so a failure halfway through a shared run leaves the committed partitions
materialized and marks only the rest failed. The work is ``pipeline.partition_loop``; this
module only turns its outcomes into Dagster events.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg

from mlruns_assets.defs.checks import evaluate_checks, table_check_specs
from mlruns_assets.defs.partitions import (
    MAX_PARTITIONS_PER_RUN,
    extraction_job_name,
    run_partitions,
)
from mlruns_assets.defs.resources import ExtractionPolicyResource, MlflowTrackingResource
from mlruns_assets.pipeline.partition_loop import PartitionCommitted, extract_partitions
from mlruns_assets.runtime.guardrails import LowDiskSpace
from mlruns_assets.runtime.progress import ExtractionProgress
from mlruns_assets.runtime.settings import Kind
from mlruns_assets.runtime.worker import worker_tags
from mlruns_assets.source.tracking import ExperimentRef
from mlruns_assets.warehouse.catalog import TableAsset, assets_for_kind
from mlruns_assets.warehouse.duckdb_writer import DuckDBWarehouse


def materializations(
    slug: str, assets: list[TableAsset], done: PartitionCommitted
) -> list[dg.AssetMaterialization]:
    """One materialization per asset of a committed partition: rows per table, time, peak RSS
    and the run's headline figures (shown on the partition in the UI)."""
    extracted = done.extraction
    shared: dict[str, dg.RawMetadataValue] = {
        "duration_s": dg.MetadataValue.float(round(done.seconds, 3)),
        "peak_rss_mb": dg.MetadataValue.float(round(done.peak_rss_bytes / 1e6, 1)),
        "run_name": dg.MetadataValue.text(done.run.info.run_name or ""),
        **{
            k: dg.MetadataValue.float(float(v))
            for k, v in extracted.summary.items()
            if v is not None
        },
    }
    if extracted.notes:
        shared["notes"] = dg.MetadataValue.text("; ".join(extracted.notes))
    return [
        dg.AssetMaterialization(
            asset_key=[slug, asset.name],
            partition=done.key,
            metadata={
                "rows": dg.MetadataValue.int(sum(done.rows.get(t.name, 0) for t in asset.tables)),
                **{
                    f"rows/{t.name}": dg.MetadataValue.int(done.rows.get(t.name, 0))
                    for t in asset.tables
                },
                **shared,
            },
        )
        for asset in assets
    ]


def build_extraction_asset(experiment: ExperimentRef, kind: Kind) -> dg.AssetsDefinition:
    """The multi-asset that extracts one experiment's runs into its DuckDB schema."""
    slug = experiment.slug
    assets = assets_for_kind(kind)

    @dg.multi_asset(
        name=f"{slug}_extraction",
        specs=[
            dg.AssetSpec(
                key=[slug, asset.name],
                description=f"{asset.description} MLflow experiment '{experiment.name}'; "
                "one partition per run.",
                skippable=True,
                group_name=slug,
                kinds={"duckdb"},
                metadata={
                    "schema": slug,
                    "tables": ", ".join(t.name for t in asset.tables),
                },
            )
            for asset in assets
        ],
        check_specs=table_check_specs(experiment, kind),
        partitions_def=run_partitions(experiment),
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_PARTITIONS_PER_RUN),
        can_subset=False,
    )
    def extraction(
        context: dg.AssetExecutionContext,
        mlflow_tracking: MlflowTrackingResource,
        extraction_policy: ExtractionPolicyResource,
        warehouse: DuckDBWarehouse,
    ) -> Iterator[dg.AssetMaterialization | dg.AssetCheckResult]:
        keys = list(context.partition_keys)
        # Names the process doing the work: the stall sensor kills it if it hangs, and
        # `extract` fails the run if the process has died without finishing it.
        context.instance.add_run_tags(context.run_id, worker_tags())
        progress = ExtractionProgress(
            total=len(keys),
            emit=context.log.info,
            database=Path(warehouse.database),
            heartbeat_seconds=extraction_policy.heartbeat_seconds,
        )
        settings = extraction_policy.extraction_settings(kind, progress.heartbeat)
        failures: dict[str, str] = {}  # bounded: one cause per partition of this step
        with warehouse.partition_writer() as writer:
            outcomes = extract_partitions(
                mlflow_tracking.store(),
                writer,
                experiment,
                keys,
                settings,
                progress,
                database=Path(warehouse.database),
                min_free_disk_bytes=int(warehouse.min_free_disk_gb * 1e9),
            )
            try:
                for outcome in outcomes:
                    if isinstance(outcome, PartitionCommitted):
                        # Yielded at once: the partition is recorded as its transaction commits.
                        yield from materializations(slug, assets, outcome)
                    else:
                        failures[outcome.key] = outcome.cause
                        context.log.error(outcome.cause)
            except LowDiskSpace as exc:
                raise dg.Failure(description=str(exc), allow_retries=False) from None
        # The checks read the whole experiment's tables, after this step's commits; the log
        # line is progress the stall sensor sees.
        context.log.info(f"{len(keys)} partitions done; checking the {slug} tables")
        yield from evaluate_checks(warehouse, slug, kind, extraction_policy.subject_map is not None)
        if failures:
            raise dg.Failure(
                description=f"{len(failures)} of {len(keys)} partitions failed: "
                + "; ".join(failures.values()),
                metadata={"failed_partitions": dg.MetadataValue.json(failures)},
                allow_retries=False,
            )

    return extraction


def extraction_job(experiment: ExperimentRef, asset: dg.AssetsDefinition) -> Any:
    # Any: define_asset_job returns a type that dagster does not export.
    """The job the headless command and the sensors launch for one experiment."""
    return dg.define_asset_job(
        name=extraction_job_name(experiment),
        selection=dg.AssetSelection.assets(asset),
        partitions_def=run_partitions(experiment),
        executor_def=dg.in_process_executor,
    )
