"""Extracting one MLflow run into Arrow tables: plain functions, no Dagster.

A run's artifacts are opened once per partition; each table is built from that one read and
handed to the warehouse, which commits them together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from mlflow.entities import Run

from mlruns_assets.guardrails import MemoryGuard
from mlruns_assets.safe_pickle import load_untrusted_pickle
from mlruns_assets.stratos_schema import ESSENTIAL_METRICS, STRATOS_TABLES
from mlruns_assets.stratos_tables import build_stratos_tables
from mlruns_assets.tables import METRIC_HISTORY, RUNS, STRING_MAP, UTC_TS, TableSpec
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


def tables_for_kind(kind: str) -> list[TableSpec]:
    """Every table an experiment of this kind fills (one asset each)."""
    specs = [RUNS, METRIC_HISTORY]
    if kind == CLASSIFICATION:
        specs += STRATOS_TABLES
    return specs


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

    tables: dict[TableSpec, pa.Table]
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


def load_metrics_artifact(artifacts: RunArtifacts, memory: MemoryGuard) -> tuple[Any, str]:
    """The run's ``metrics/metrics_*.pickle``, loaded with the allow-list unpickler."""
    candidates = [
        (path, size)
        for path, size in artifacts.list(METRICS_FOLDER)
        if path.rsplit("/", 1)[-1].startswith("metrics_") and path.endswith(".pickle")
    ]
    if not candidates:
        expected = f"{METRICS_FOLDER}/metrics_{artifacts.run.info.run_name}.pickle"
        raise FileNotFoundError(f"missing metrics artifact {expected}")
    if len(candidates) > 1:
        names = ", ".join(p for p, _ in candidates)
        raise ValueError(f"several metrics artifacts ({names}): cannot tell which is the run's")
    path, size = candidates[0]
    memory.check(f"loading {path}", size or 0)
    return load_untrusted_pickle(artifacts.local_path(path), display_name=path), path


def extract_run(store: TrackingStore, run: Run, settings: ExtractionSettings) -> RunExtraction:
    """Every table of one run. Bad input raises an exception with a one-line cause."""
    now = dt.datetime.now(tz=dt.UTC)
    result = RunExtraction({RUNS: runs_table(run, now), METRIC_HISTORY: store.metric_history(run)})
    if settings.kind == CLASSIFICATION:
        with store.artifacts(run) as artifacts:
            metrics, path = load_metrics_artifact(artifacts, settings.memory)
        tables, notes = build_stratos_tables(run, metrics, path, settings.subject_map, now)
        del metrics
        result.tables.update(tables)
        result.notes += notes
        row = tables[ESSENTIAL_METRICS].to_pylist()[0]
        result.summary = {k: row[k] for k in ("auroc", "brier_score", "calibration_slope")}
    settings.memory.check("the end of the run")
    return result
