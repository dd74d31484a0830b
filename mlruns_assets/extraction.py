"""Extracting one MLflow run into Arrow tables: plain functions, no Dagster.

A run's artifacts are opened once per partition; each table is built from that one read and
handed to the warehouse, which commits them together. A table may be handed over as chunks
(imputation signals), read only while the warehouse inserts them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from mlflow.entities import Run

from mlruns_assets.guardrails import MemoryGuard, format_bytes
from mlruns_assets.safe_pickle import load_untrusted_pickle
from mlruns_assets.signals import (
    IMPUTATION_FOLDER,
    imputation_methods,
    read_signals,
    signal_tables,
)
from mlruns_assets.signals_schema import PREPROCESSED_SIGNALS
from mlruns_assets.stratos_schema import ESSENTIAL_METRICS, STRATOS_TABLES
from mlruns_assets.stratos_tables import build_stratos_tables
from mlruns_assets.tables import METRIC_HISTORY, RUNS, STRING_MAP, UTC_TS, TableData, TableSpec
from mlruns_assets.tracking import RunArtifacts, TrackingStore

GENERIC = "generic"
CLASSIFICATION = "classification"
IMPUTATION = "imputation"
KINDS = (GENERIC, CLASSIFICATION, IMPUTATION)
METRICS_FOLDER = "metrics"


def infer_kind(experiment_name: str) -> str:
    """The experiment kind from its name, unless configured: which tables its runs carry."""
    lowered = experiment_name.lower()
    if "classif" in lowered:
        return CLASSIFICATION
    if "imput" in lowered:
        return IMPUTATION
    return GENERIC


@dataclass(frozen=True)
class TableAsset:
    """One asset of an experiment: tables that always change together, because one read of a
    run's artifacts fills them and one transaction commits them.

    Grouped rather than one asset per table because each asset costs two Dagster events per
    partition (planned, materialized) at ~20 ms each on SQLite instance storage: eleven table
    assets made those events cost three times the extraction itself (benchmarks/, issue 6).
    """

    name: str
    description: str
    tables: tuple[TableSpec, ...]


RUN_RECORD = TableAsset(
    "runs",
    "What MLflow recorded of each run: identity, status, params and tags (`runs`) and every "
    "logged metric value (`metric_history`).",
    (RUNS, METRIC_HISTORY),
)
STRATOS = TableAsset(
    "stratos",
    "The STRATOS performance tables of each run, computed from its metrics pickle: "
    + ", ".join(f"`{t.name}`" for t in STRATOS_TABLES)
    + ".",
    tuple(STRATOS_TABLES),
)
SIGNALS = TableAsset(
    "preprocessed_signals",
    "The imputed signal of every subject of each run, from its imputation pickle "
    "(`preprocessed_signals`).",
    (PREPROCESSED_SIGNALS,),
)


def assets_for_kind(kind: str) -> list[TableAsset]:
    """The assets an experiment of this kind has, in order."""
    if kind == CLASSIFICATION:
        return [RUN_RECORD, STRATOS]
    if kind == IMPUTATION:
        return [RUN_RECORD, SIGNALS]
    return [RUN_RECORD]


def tables_for_kind(kind: str) -> list[TableSpec]:
    """Every table an experiment of this kind fills, in the order of its assets."""
    return [table for asset in assets_for_kind(kind) for table in asset.tables]


def asset_of_table(kind: str) -> dict[str, str]:
    """Table name -> name of the asset (of this kind) that holds it."""
    return {t.name: a.name for a in assets_for_kind(kind) for t in a.tables}


def all_tables() -> list[TableSpec]:
    """Every declared table, each once, in the order of the kinds."""
    seen: dict[str, TableSpec] = {}  # bounded: the declared tables
    for kind in KINDS:
        for spec in tables_for_kind(kind):
            seen.setdefault(spec.name, spec)
    return list(seen.values())


@dataclass(frozen=True)
class ExtractionSettings:
    """What an extraction step needs besides the run itself."""

    kind: str = GENERIC
    subject_map: dict[str, str] | None = None
    memory: MemoryGuard = field(default_factory=lambda: MemoryGuard(None))
    heartbeat: Callable[[str], None] | None = None


@dataclass
class RunExtraction:
    """One run's tables, and what the UI should show about them."""

    tables: dict[TableSpec, TableData]
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def _ms_to_ts(ms: int | None) -> dt.datetime | None:
    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def runs_table(run: Run, extracted_at: dt.datetime) -> pa.Table:
    """The run's one row in ``runs``."""
    info = run.info
    columns = {
        "run_id": pa.array([info.run_id]),
        "run_name": pa.array([info.run_name], pa.string()),
        "experiment_id": pa.array([info.experiment_id]),
        "status": pa.array([info.status]),
        "start_time": pa.array([_ms_to_ts(info.start_time)], UTC_TS),
        "end_time": pa.array([_ms_to_ts(info.end_time)], UTC_TS),
        "artifact_uri": pa.array([info.artifact_uri], pa.string()),
        "params": pa.array([sorted(run.data.params.items())], STRING_MAP),
        "tags": pa.array([sorted(run.data.tags.items())], STRING_MAP),
        "extracted_at": pa.array([extracted_at], UTC_TS),
    }
    return pa.table(columns, schema=RUNS.schema)


def load_pickle_artifact(
    artifacts: RunArtifacts,
    folder: str,
    expected: str,
    memory: MemoryGuard,
    heartbeat: Callable[[str], None] | None = None,
) -> tuple[Any, str]:
    """The run's one ``{folder}/{folder}_*.pickle``, loaded with the allow-list unpickler.

    ``expected`` names the artifact in the error when there is none. ``heartbeat`` reports
    before and after the load, so a slow one shows in the progress."""
    candidates = [
        (path, size)
        for path, size in artifacts.list(folder)
        if path.rsplit("/", 1)[-1].startswith(f"{folder}_") and path.endswith(".pickle")
    ]
    if not candidates:
        raise FileNotFoundError(f"missing {folder} artifact {expected}")
    if len(candidates) > 1:
        names = ", ".join(p for p, _ in candidates)
        raise ValueError(f"several {folder} artifacts ({names}): cannot tell which is the run's")
    path, size = candidates[0]
    memory.check(f"loading {path}", size or 0)
    if heartbeat is not None:
        heartbeat(f"loading {path} ({format_bytes(size or 0)})")
    loaded = load_untrusted_pickle(artifacts.local_path(path), display_name=path)
    if heartbeat is not None:
        heartbeat(f"loaded {path}")
    return loaded, path


def load_metrics_artifact(
    artifacts: RunArtifacts,
    memory: MemoryGuard,
    heartbeat: Callable[[str], None] | None = None,
) -> tuple[Any, str]:
    """The run's ``metrics/metrics_*.pickle``."""
    expected = f"{METRICS_FOLDER}/metrics_{artifacts.run.info.run_name}.pickle"
    return load_pickle_artifact(artifacts, METRICS_FOLDER, expected, memory, heartbeat)


def load_imputation_artifact(
    artifacts: RunArtifacts,
    memory: MemoryGuard,
    heartbeat: Callable[[str], None] | None = None,
) -> tuple[Any, str]:
    """The run's ``imputation/imputation_*.pickle``."""
    expected = f"{IMPUTATION_FOLDER}/{IMPUTATION_FOLDER}_<model>.pickle"
    return load_pickle_artifact(artifacts, IMPUTATION_FOLDER, expected, memory, heartbeat)


def signal_chunks(
    store: TrackingStore, run: Run, settings: ExtractionSettings
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


def extract_run(store: TrackingStore, run: Run, settings: ExtractionSettings) -> RunExtraction:
    """Every table of one run. Bad input raises an exception with a one-line cause.

    Imputation signals are a lazy iterable of chunks: they are read as the warehouse inserts
    them, inside the partition's transaction, so the run's pickle is in memory only then.

    The memory guard runs before each read and names it; ``settings.heartbeat`` is called
    between the reads (never from a timer: a hung read goes quiet, which the stall sensor sees).
    The metrics artifact is read first: it is the big read, and a memory failure then names it.
    """
    run_id = run.info.run_id

    def beat(what: str) -> None:
        if settings.heartbeat is not None:
            settings.heartbeat(f"run {run_id}: {what}")

    now = dt.datetime.now(tz=dt.UTC)
    metrics: Any = None
    path = ""
    if settings.kind == CLASSIFICATION:
        with store.artifacts(run) as artifacts:
            metrics, path = load_metrics_artifact(artifacts, settings.memory, beat)
    settings.memory.check(f"reading the metric history of run {run_id}")
    beat("reading the metric history")
    history = store.metric_history(run)
    beat(f"read the metric history ({history.num_rows} points)")
    result = RunExtraction({RUNS: runs_table(run, now), METRIC_HISTORY: history})
    if settings.kind == CLASSIFICATION:
        tables, notes = build_stratos_tables(run, metrics, path, settings.subject_map, now)
        del metrics
        result.tables.update(tables)
        result.notes += notes
        row = tables[ESSENTIAL_METRICS].to_pylist()[0]
        result.summary = {k: row[k] for k in ("auroc", "brier_score", "calibration_slope")}
        beat(f"built {len(tables)} STRATOS tables")
    elif settings.kind == IMPUTATION:
        result.tables[PREPROCESSED_SIGNALS] = signal_chunks(store, run, settings)
    settings.memory.check(f"the end of run {run_id}")
    return result
