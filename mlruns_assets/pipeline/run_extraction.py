"""Extracting one MLflow run into Arrow tables: plain functions, no Dagster.

A run's artifacts are opened once per partition; each table is built from that one read and
handed to the warehouse, which commits them together. A table may be handed over as chunks
(imputation signals), read only while the warehouse inserts them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from mlruns_assets.runtime.guardrails import MemoryGuard
from mlruns_assets.runtime.progress import Heartbeat as Heartbeat  # re-exported (resources)
from mlruns_assets.runtime.settings import Kind
from mlruns_assets.source.artifacts import load_imputation_artifact, load_metrics_artifact
from mlruns_assets.source.run_data import MetricPoints, RunLike, RunReader
from mlruns_assets.transform.run_record import metric_history_table, runs_table
from mlruns_assets.transform.signals import imputation_methods, read_signals, signal_tables
from mlruns_assets.transform.stratos_tables import build_stratos_tables
from mlruns_assets.warehouse.signals_schema import PREPROCESSED_SIGNALS
from mlruns_assets.warehouse.stratos_schema import ESSENTIAL_METRICS
from mlruns_assets.warehouse.tables import METRIC_HISTORY, RUNS, TableData, TableSpec


@dataclass(frozen=True)
class ExtractionSettings:
    """What an extraction step needs besides the run itself."""

    kind: Kind = Kind.GENERIC
    subject_map: dict[str, str] | None = None
    memory: MemoryGuard = field(default_factory=lambda: MemoryGuard(None))
    # Reports what the loop is doing, reads included (progress the stall sensor sees).
    heartbeat: Heartbeat | None = None


@dataclass
class RunExtraction:
    """One run's tables, and what the UI should show about them."""

    tables: dict[TableSpec, TableData]
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def signal_chunks(
    store: RunReader, run: RunLike, settings: ExtractionSettings
) -> Iterator[pa.Table]:
    """The run's ``preprocessed_signals`` rows, a chunk at a time. The imputation pickle is
    loaded when the first chunk is asked for; all but the signal arrays are dropped at once,
    and those once the last chunk has been taken."""
    with store.artifacts(run) as artifacts:
        data, path = load_imputation_artifact(artifacts, settings.memory, settings.heartbeat)
    splits = read_signals(data, path)
    # The rest (a Python string per subject and time point for the codes, raw traces, ...)
    # need not stay in memory while DuckDB copies the signals.
    del data
    methods = imputation_methods(run)
    for table in signal_tables(splits, run.info.run_id, methods, settings.subject_map, path):
        settings.memory.check(f"{path} ({table.num_rows} signals)")
        if settings.heartbeat is not None:
            settings.heartbeat(f"{path}: inserting {table.num_rows} signals")
        yield table
        del table  # inserted by now: keep no reference while the next chunk is built


def extract_run(
    store: RunReader,
    run: RunLike,
    settings: ExtractionSettings,
    history: MetricPoints | None = None,
) -> RunExtraction:
    """Every table of one run. Bad input raises an exception with a one-line cause.

    Imputation signals are a lazy iterable of chunks: they are read as the warehouse inserts
    them, inside the partition's transaction, so the run's pickle is in memory only then.

    The memory guard runs before each read and names it; ``settings.heartbeat`` is called
    between the reads (never from a timer: a hung read goes quiet, which the stall sensor sees).
    The metrics artifact is read first: it is the big read, and a memory failure then names it.
    ``history`` is the run's metric history when it was read in bulk; else it is read here.
    """
    run_id = run.info.run_id

    def beat(what: str, *, at_once: bool = False) -> None:
        if settings.heartbeat is not None:
            settings.heartbeat(f"run {run_id}: {what}", at_once=at_once)

    now = dt.datetime.now(tz=dt.UTC)
    metrics: Any = None
    path = ""
    if settings.kind == Kind.CLASSIFICATION:
        with store.artifacts(run) as artifacts:
            metrics, path = load_metrics_artifact(artifacts, settings.memory, beat)
    if history is None:
        settings.memory.check(f"reading the metric history of run {run_id}")
        beat("reading the metric history")
        history = store.metric_history(run)
        beat(f"read the metric history ({len(history.keys)} points)")
    result = RunExtraction(
        {RUNS: runs_table(run, now), METRIC_HISTORY: metric_history_table(run_id, history)}
    )
    if settings.kind == Kind.CLASSIFICATION:
        tables, notes = build_stratos_tables(run, metrics, path, settings.subject_map, now)
        del metrics
        result.tables.update(tables)
        result.notes += notes
        row = tables[ESSENTIAL_METRICS].to_pylist()[0]
        result.summary = {k: row[k] for k in ("auroc", "brier_score", "calibration_slope")}
        beat(f"built {len(tables)} STRATOS tables")
    elif settings.kind == Kind.IMPUTATION:
        result.tables[PREPROCESSED_SIGNALS] = signal_chunks(store, run, settings)
    settings.memory.check(f"the end of run {run_id}")
    return result
