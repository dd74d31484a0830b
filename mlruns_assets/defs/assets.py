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

from mlruns_assets.defs.checkpoints import (
    kept_on_resume,
    observe_in_step,
    observed_versions,
    provenance_tags,
    source_asset_key,
)
from mlruns_assets.defs.checks import evaluate_checks, table_check_specs
from mlruns_assets.defs.partitions import (
    EXTRACTION_POOL,
    extraction_job_name,
    run_partitions,
)
from mlruns_assets.defs.resources import ExtractionPolicyResource, MlflowTrackingResource
from mlruns_assets.pipeline.checkpoint import SettingsFingerprint, settings_fingerprint
from mlruns_assets.pipeline.extraction_pool import step_pool
from mlruns_assets.pipeline.partition_loop import (
    PartitionCommitted,
    PartitionFailed,
    PartitionOutcome,
    extract_partitions,
)
from mlruns_assets.runtime.guardrails import LowDiskSpace
from mlruns_assets.runtime.interrupts import stop_requested
from mlruns_assets.runtime.progress import ExtractionProgress
from mlruns_assets.runtime.worker import worker_tags
from mlruns_assets.source.tracking import ExperimentRef, run_version
from mlruns_assets.warehouse.catalog import TableAsset, assets_for_kind
from mlruns_assets.warehouse.duckdb_writer import DuckDBWarehouse, PartitionWriter
from mlruns_assets.warehouse.identity import ensure_database_id


def materializations(
    slug: str,
    assets: list[TableAsset],
    done: PartitionCommitted,
    record: dict[str, Any],
    tags: dict[str, str],
) -> list[dg.AssetMaterialization]:
    """One materialization per asset of a committed partition: rows per table, time, peak RSS,
    the run's headline figures (shown on the partition in the UI), and what the checkpoint
    vouches for (``record``: database id, run version, settings; ``tags``: provenance)."""
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
        **record,
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
            tags=tags,
        )
        for asset in assets
    ]


class CheckpointRecorder:
    """What each committed partition's materializations record: this database's id, the run's
    version (observed first when new, so the provenance points at it) and the settings."""

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        experiment: ExperimentRef,
        fingerprint: SettingsFingerprint,
        keys: list[str],
    ) -> None:
        self.context, self.experiment, self.fingerprint = context, experiment, fingerprint
        self.observed = observed_versions(context.instance, experiment, keys)
        self.database_id: str | None = None

    def materializations(
        self, assets: list[TableAsset], done: PartitionCommitted, writer: PartitionWriter
    ) -> list[dg.AssetMaterialization]:
        version = run_version(done.run)
        current = self.observed.get(done.key)
        if current is None or current.version != version:
            self.observed[done.key] = observe_in_step(
                self.context, self.experiment, done.key, version
            )
        # Read once, on the connection the commit used: the id is made with the database.
        self.database_id = self.database_id or writer.with_connection(ensure_database_id)
        record = {
            "database_id": self.database_id,
            "source_version": version,
            **self.fingerprint.metadata(),
        }
        tags = provenance_tags(self.experiment, self.fingerprint, self.observed[done.key])
        return materializations(self.experiment.slug, assets, done, record, tags)


def _failing_on_low_disk(outcomes: Iterator[PartitionOutcome]) -> Iterator[PartitionOutcome]:
    try:
        yield from outcomes
    except LowDiskSpace as exc:  # before the first partition: nothing to retry
        raise dg.Failure(description=str(exc), allow_retries=False) from None


def build_extraction_asset(
    experiment: ExperimentRef, fingerprint: SettingsFingerprint, partitions_per_run: int
) -> dg.AssetsDefinition:
    """The multi-asset that extracts one experiment's runs into its DuckDB schema, a backfill
    run covering up to ``partitions_per_run`` partitions. Its code version is the settings
    fingerprint: partitions written under other settings show stale."""
    kind = fingerprint.kind
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
                code_version=fingerprint.code_version,
                deps=[source_asset_key(experiment)],
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
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=partitions_per_run),
        can_subset=False,
        pool=EXTRACTION_POOL,
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
        # The rows follow from the settings this step really runs with (its subject map as
        # loaded now), which the definitions' code version shows when nothing has changed.
        fingerprint = settings_fingerprint(kind, settings.subject_map)
        store = mlflow_tracking.store()
        if context.run.is_resume_retry:  # run retries, the UI's "Re-execute from failure"
            kept = kept_on_resume(
                context.instance,
                experiment,
                fingerprint,
                keys,
                run=context.run,
                store=store,
                warehouse=warehouse,
                on_wait=lambda s: progress.heartbeat(f"waiting {s:.0f} s for the database lock"),
            )
            keys = [k for k in keys if k not in kept]
            progress.total = len(keys)
            context.log.info(
                f"resuming a failed run: {len(kept)} partitions it committed are kept, "
                f"{len(keys)} to extract"
            )
        recorder = CheckpointRecorder(context, experiment, fingerprint, keys)
        failures: dict[str, str] = {}  # bounded: one cause per partition of this step
        with (
            step_pool(store, kind, extraction_policy.workers, len(keys)) as pool,
            warehouse.partition_writer() as writer,
        ):
            if pool is not None:
                context.log.info(f"{pool.workers} worker processes read the runs")
            outcomes = extract_partitions(
                store,
                writer,
                experiment,
                keys,
                settings,
                progress,
                database=Path(warehouse.database),
                min_free_disk_bytes=int(warehouse.min_free_disk_gb * 1e9),
                should_stop=stop_requested,
                pool=pool,
            )
            for outcome in _failing_on_low_disk(outcomes):
                if isinstance(outcome, PartitionFailed):
                    failures[outcome.key] = outcome.cause
                    context.log.error(outcome.cause)
                else:  # yielded at once: recorded as its transaction commits
                    yield from recorder.materializations(assets, outcome, writer)
        if stop_requested():  # the partitions not started stay missing, not failed
            context.log.warning("interrupted: the partitions not started stay missing")
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
