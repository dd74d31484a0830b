"""The per-partition loop of an extraction step, as a plain generator of outcomes.

Each partition is one MLflow run: read it, build its tables, replace its rows in one
transaction that also validates them, and report the outcome as soon as it has committed (or
failed). A failing run fails its partition only; the loop goes on with the next. The Dagster
asset turns the outcomes into events; tests drive the loop without Dagster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import duckdb
from mlflow.entities import Run

from mlruns_assets.pipeline.extraction_pool import ExtractionPool, extracted_in_order
from mlruns_assets.pipeline.run_extraction import ExtractionSettings, RunExtraction
from mlruns_assets.runtime.errors import ExtractionError, one_line
from mlruns_assets.runtime.guardrails import check_free_disk, peak_rss
from mlruns_assets.runtime.progress import ExtractionProgress
from mlruns_assets.source.partition_keys import run_id_of
from mlruns_assets.source.tracking import ExperimentRef, TrackingStore
from mlruns_assets.warehouse.catalog import all_tables, tables_for_kind
from mlruns_assets.warehouse.duckdb_writer import PartitionWriter, delete_partitions
from mlruns_assets.warehouse.tables import TableSpec
from mlruns_assets.warehouse.validation import ERROR, run_checks, run_failures_sql


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
    """A partition that did not commit; ``cause`` is one line naming the run and the cause.
    Rows an earlier extraction had written for the run are removed (``removed_rows`` of them):
    a failed partition holds no rows, so none written under older settings survive."""

    key: str
    cause: str
    removed_rows: int = 0


PartitionOutcome = PartitionCommitted | PartitionFailed


def reject_invalid_run(
    schema: str, specs: list[TableSpec], run_id: str, conn: duckdb.DuckDBPyConnection
) -> None:
    """Raise (and so roll back) when the run's freshly inserted rows fail an ERROR check: one
    query, then the detailed checks only to name what failed."""
    sql = run_failures_sql(schema, specs)
    found = conn.execute(sql, {"run_id": run_id}).fetchone() if sql else None
    if not found or not found[0]:
        return
    outcomes = run_checks(conn, schema, specs, run_id)
    failed = [o for o in outcomes if not o.passed and o.severity == ERROR]
    if failed:
        raise ExtractionError(
            "rows fail checks: " + "; ".join(f"{o.table}.{o.check} ({o.detail})" for o in failed)
        )


def _report_lock_wait(progress: ExtractionProgress, run_id: str, waited: float) -> None:
    progress.heartbeat(
        f"run {run_id}: waiting {waited:.0f} s for the database lock held by another process"
    )


def _report(progress: ExtractionProgress, key: str, line: str) -> None:
    progress.heartbeat(f"run {key}: {line}", at_once=True)


def _remove_old_rows(
    writer: PartitionWriter, slug: str, specs: list[TableSpec], run_id: str
) -> tuple[int, str]:
    """Remove a failed run's rows from an earlier extraction: (rows removed, why not)."""
    remove = partial(delete_partitions, schema_name=slug, specs=specs, run_ids=[run_id])
    try:
        return writer.with_connection(remove), ""
    except Exception as exc:  # the partition has failed already: say why its old rows stayed
        return 0, f"; its old rows could not be removed: {one_line(exc)}"


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
    should_stop: Callable[[], bool] = lambda: False,
    pool: ExtractionPool | None = None,
) -> Iterator[PartitionOutcome]:
    """Extract and commit each partition (``source.partition_keys``) of ``keys`` in order.

    Raises ``LowDiskSpace`` before the first partition when the database's disk is short;
    everything later fails its partition only. Progress reaches ``progress`` as partitions
    complete and, through ``settings.heartbeat``, between the reads inside one. Once
    ``should_stop()`` (an interrupt), no further partition starts. With a ``pool``, its
    workers read and transform the runs ahead of the commits (``extraction_pool``).
    """
    check_free_disk([database], min_free_disk_bytes)
    slug = experiment.slug
    specs = tables_for_kind(settings.kind)
    # A run extracted before under another kind loses its rows in that kind's tables.
    other_kinds = [t for t in all_tables() if t not in specs]
    for item in extracted_in_order(store, experiment, keys, settings, progress, pool, should_stop):
        key, run, run_id = item.key, item.run, run_id_of(item.key)
        label = f"run {run.info.run_name!r} ({run_id})" if run else f"run {run_id}"
        try:
            if isinstance(item.result, Exception):
                raise item.result
            extracted = item.result
            progress.heartbeat(f"run {run_id}: committing {len(extracted.tables)} tables")
            rows = writer.commit(
                slug,
                run_id,
                extracted.tables,
                validate=partial(reject_invalid_run, slug, specs, run_id),
                on_wait=partial(_report_lock_wait, progress, run_id),
                clear=other_kinds,
                report=partial(_report, progress, key),
            )
        except Exception as exc:  # any cause fails this partition only
            cause = f"{label}: {one_line(exc)}"
            if isinstance(exc, FileNotFoundError) and str(exc).startswith("missing "):
                cause += (
                    f" (the experiment is extracted as {settings.kind.value}; if its runs carry "
                    f"no such artifact, choose its kind: --kind '{experiment.name}=generic')"
                )
            removed, why_not = _remove_old_rows(writer, slug, all_tables(), run_id)
            if removed:
                cause += f"; its {removed} rows from an earlier extraction were removed"
            cause += why_not
            yield PartitionFailed(key, cause, removed)
            progress.partition_done(key, error=cause)
            continue
        assert run is not None  # extracted, so found
        seconds = time.monotonic() - item.started
        rss = max(peak_rss(), item.worker_peak_rss)
        yield PartitionCommitted(key, run, rows, extracted, seconds, rss)
        progress.partition_done(key)
