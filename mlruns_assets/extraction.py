"""Extracting one MLflow run into Arrow tables: plain functions, no Dagster.

A run's artifacts are opened once per partition; each table is built from that one read and
handed to the warehouse, which commits them together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
from mlflow.entities import Run

from mlruns_assets.tables import METRIC_HISTORY, RUNS, STRING_MAP, UTC_TS, TableSpec
from mlruns_assets.tracking import TrackingStore

GENERIC = "generic"
CLASSIFICATION = "classification"
IMPUTATION = "imputation"
KINDS = (GENERIC, CLASSIFICATION, IMPUTATION)


class ExtractionError(RuntimeError):
    """A run cannot be extracted; the message is one line naming the artifact and the cause."""


def infer_kind(experiment_name: str) -> str:
    """The experiment kind from its name, unless configured: which tables its runs carry."""
    lowered = experiment_name.lower()
    if "classif" in lowered:
        return CLASSIFICATION
    if "imput" in lowered:
        return IMPUTATION
    return GENERIC


@dataclass(frozen=True)
class ExtractionSettings:
    """What an extraction step needs besides the run itself."""

    kind: str = GENERIC
    subject_map: dict[str, str] | None = None
    max_memory_bytes: int | None = None
    heartbeat: Callable[[str], None] | None = None


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


def tables_for_kind(kind: str) -> list[TableSpec]:
    """Every table an experiment of this kind fills (one asset each)."""
    specs = [RUNS, METRIC_HISTORY]
    if kind == CLASSIFICATION:
        from mlruns_assets.stratos_tables import STRATOS_TABLES

        specs += STRATOS_TABLES
    return specs


def extract_run(
    store: TrackingStore, run: Run, settings: ExtractionSettings
) -> dict[TableSpec, pa.Table]:
    """Every table of one run. Raises ``ExtractionError`` (one line) for bad input."""
    now = dt.datetime.now(tz=dt.UTC)
    tables: dict[TableSpec, pa.Table] = {
        RUNS: runs_table(run, now),
        METRIC_HISTORY: store.metric_history(run),
    }
    if settings.kind == CLASSIFICATION:
        from mlruns_assets.stratos_tables import stratos_tables_for_run

        with store.artifacts(run) as artifacts:
            tables.update(stratos_tables_for_run(run, artifacts, settings, now))
    return tables
