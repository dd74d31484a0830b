"""The per-partition loop of an extraction step, as a plain generator of outcomes.

Each partition is one MLflow run: read it, build its tables, replace its rows in one
transaction that also validates them, and report the outcome as soon as it has committed (or
failed). A failing run fails its partition only; the loop goes on with the next. The Dagster
asset turns the outcomes into events; tests drive the loop without Dagster.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import duckdb
from mlflow.entities import Run

from mlruns_assets.pipeline.run_extraction import ExtractionSettings, RunExtraction, extract_run
from mlruns_assets.runtime.errors import ExtractionError, one_line
from mlruns_assets.runtime.guardrails import check_free_disk, peak_rss, reset_peak_rss
from mlruns_assets.runtime.progress import ExtractionProgress
from mlruns_assets.source.tracking import ExperimentRef, TrackingStore
from mlruns_assets.warehouse.catalog import tables_for_kind
from mlruns_assets.warehouse.duckdb_writer import PartitionWriter
from mlruns_assets.warehouse.tables import TableSpec
from mlruns_assets.warehouse.validation import ERROR, run_checks


@dataclass(frozen=True)
class PartitionCommitted:
    """A partition whose rows committed: rows per table, its run and what was extracted."""

    key: str
    run: Run
    rows: dict[str, int]
    extraction: RunExtraction
    seconds: float
    peak_rss_bytes: int


@dataclass(frozen=True)
class PartitionFailed:
    """A partition that did not commit; ``cause`` is one line naming the run and the cause."""

    key: str
    cause: str


PartitionOutcome = PartitionCommitted | PartitionFailed


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


def _report_lock_wait(progress: ExtractionProgress, key: str, waited: float) -> None:
    progress.heartbeat(
        f"run {key}: waiting {waited:.0f} s for the database lock held by another process"
    )


def extract_partitions(
    store: TrackingStore,
    writer: PartitionWriter,
    experiment: ExperimentRef,
    keys: Sequence[str],
    settings: ExtractionSettings,
    progress: ExtractionProgress,
    *,
    database: Path,
    min_free_disk_bytes: int,
) -> Iterator[PartitionOutcome]:
    """Extract and commit each partition (MLflow run id) of ``keys`` in order.

    Raises ``LowDiskSpace`` before the first partition when the database's disk is short;
    everything later fails its partition only. Progress reaches ``progress`` as partitions
    complete and, through ``settings.heartbeat``, between the reads inside one.
    """
    check_free_disk([database], min_free_disk_bytes)
    slug = experiment.slug
    specs = tables_for_kind(settings.kind)
    runs = store.runs_by_id(experiment.experiment_id, list(keys))
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
            cause = f"{label}: {one_line(exc)}"
            yield PartitionFailed(key, cause)
            progress.partition_done(key, error=cause)
            continue
        yield PartitionCommitted(key, run, rows, extracted, time.monotonic() - started, peak_rss())
        progress.partition_done(key)
