"""The extraction assets: per experiment, a few assets (see ``extraction.TableAsset``), each
holding tables that change together, all filled by one step that reads each run's artifacts once.

A step covers one partition or a contiguous range of them (backfills, sensor runs, the headless
command). Each partition commits on its own and is recorded as materialized the moment its
transaction commits, so a failure halfway through a shared run leaves the committed partitions
materialized and marks only the rest failed.
"""

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from mlflow.entities import Run

from mlruns_assets.checks import evaluate_checks, table_check_specs
from mlruns_assets.errors import ExtractionError
from mlruns_assets.extraction import (
    ExtractionSettings,
    RunExtraction,
    TableAsset,
    assets_for_kind,
    extract_run,
    tables_for_kind,
)
from mlruns_assets.guardrails import (
    LowDiskSpace,
    MemoryGuard,
    check_free_disk,
    peak_rss,
    reset_peak_rss,
)
from mlruns_assets.partitions import MAX_PARTITIONS_PER_RUN, run_partitions
from mlruns_assets.progress import ExtractionProgress
from mlruns_assets.resources import MlflowTrackingResource
from mlruns_assets.stall_sensor import worker_tags
from mlruns_assets.subjects import load_subject_map
from mlruns_assets.tables import TableSpec
from mlruns_assets.tracking import ExperimentRef
from mlruns_assets.validation import ERROR, run_checks
from mlruns_assets.warehouse import DuckDBWarehouse


def one_line(exc: BaseException) -> str:
    """An exception as one line: the cause, never a traceback."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."


def _report_lock_wait(progress: ExtractionProgress, key: str, waited: float) -> None:
    progress.heartbeat(
        f"run {key}: waiting {waited:.0f} s for the database lock held by another process"
    )


def reject_invalid_run(
    schema: str, specs: list[TableSpec], run_id: str, conn: duckdb.DuckDBPyConnection
) -> None:
    """Raise (and so roll back) when the run's freshly inserted rows fail an ERROR check."""
    outcomes = run_checks(conn, schema, specs, run_id)
    failed = [o for o in outcomes if not o.passed and o.severity == ERROR]
    if failed:
        raise ExtractionError(
            "rows fail checks: " + "; ".join(f"{o.table}.{o.check} ({o.detail})" for o in failed)
        )


def materializations(
    slug: str,
    assets: list[TableAsset],
    key: str,
    rows: dict[str, int],
    run: Run,
    extracted: RunExtraction,
    started: float,
) -> list[dg.AssetMaterialization]:
    """One materialization per asset of a committed partition: rows per table, time, peak RSS
    and the run's headline figures (shown on the partition in the UI)."""
    shared: dict[str, dg.RawMetadataValue] = {
        "duration_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
        "peak_rss_mb": dg.MetadataValue.float(round(peak_rss() / 1e6, 1)),
        "run_name": dg.MetadataValue.text(run.info.run_name or ""),
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
            partition=key,
            metadata={
                "rows": dg.MetadataValue.int(sum(rows.get(t.name, 0) for t in asset.tables)),
                **{
                    f"rows/{t.name}": dg.MetadataValue.int(rows.get(t.name, 0))
                    for t in asset.tables
                },
                **shared,
            },
        )
        for asset in assets
    ]


def build_extraction_asset(experiment: ExperimentRef, kind: str) -> dg.AssetsDefinition:
    """The multi-asset that extracts one experiment's runs into its DuckDB schema."""
    slug = experiment.slug
    assets = assets_for_kind(kind)
    specs = tables_for_kind(kind)
    partitions = run_partitions(experiment)

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
                    "partition_expr": "run_id",
                    "schema": slug,
                    "tables": ", ".join(t.name for t in asset.tables),
                },
            )
            for asset in assets
        ],
        check_specs=table_check_specs(experiment, kind),
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_PARTITIONS_PER_RUN),
        can_subset=False,
    )
    def extraction(
        context: dg.AssetExecutionContext,
        mlflow_tracking: MlflowTrackingResource,
        warehouse: DuckDBWarehouse,
    ) -> Iterator[dg.AssetMaterialization | dg.AssetCheckResult]:
        keys = list(context.partition_keys)
        # Names the process doing the work: the stall sensor kills it if it hangs, and
        # `extract` fails the run if the process has died without finishing it.
        context.instance.add_run_tags(context.run_id, worker_tags())
        try:
            check_free_disk([Path(warehouse.database)], int(warehouse.min_free_disk_gb * 1e9))
        except LowDiskSpace as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        store = mlflow_tracking.store()
        runs = store.runs_by_id(experiment.experiment_id, keys)
        progress = ExtractionProgress(
            total=len(keys),
            emit=context.log.info,
            database=Path(warehouse.database),
            heartbeat_seconds=mlflow_tracking.heartbeat_seconds,
        )
        settings = ExtractionSettings(
            kind=kind,
            subject_map=(
                load_subject_map(mlflow_tracking.subject_map)
                if mlflow_tracking.subject_map
                else None
            ),
            memory=MemoryGuard(int(mlflow_tracking.max_memory_gb * 1e9)),
            heartbeat=progress.heartbeat,
        )
        failures: dict[str, str] = {}  # bounded: one cause per partition of this step
        with warehouse.partition_writer() as writer:
            for key in keys:
                started = time.monotonic()
                reset_peak_rss()
                run = runs.get(key)
                label = f"run {run.info.run_name!r} ({key})" if run else f"run {key}"
                try:
                    if run is None:
                        raise LookupError(f"not found in experiment {experiment.name!r}")
                    extracted = extract_run(store, run, settings)
                    progress.heartbeat(f"run {key}: committing {len(extracted.tables)} tables")
                    rows = writer.commit(
                        slug,
                        key,
                        extracted.tables,
                        validate=partial(reject_invalid_run, slug, specs, key),
                        on_wait=partial(_report_lock_wait, progress, key),
                    )
                except Exception as exc:  # any cause fails this partition only
                    failures[key] = f"{label}: {one_line(exc)}"
                    context.log.error(failures[key])
                    progress.partition_done(key, error=failures[key])
                    continue
                # Yielded at once, so the partition is recorded as its transaction commits.
                yield from materializations(slug, assets, key, rows, run, extracted, started)
                progress.partition_done(key)
        # The checks read the whole experiment's tables, after this step's commits; the log
        # line is progress the stall sensor sees.
        context.log.info(f"{len(keys)} partitions done; checking the {slug} tables")
        yield from evaluate_checks(warehouse, slug, kind, bool(mlflow_tracking.subject_map))
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
        name=f"{experiment.slug}_extraction_job",
        selection=dg.AssetSelection.assets(asset),
        partitions_def=run_partitions(experiment),
        executor_def=dg.in_process_executor,
    )
