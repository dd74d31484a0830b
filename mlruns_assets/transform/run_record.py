"""A run's MLflow record as the ``runs`` and ``metric_history`` tables."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from mlruns_assets.source.run_data import MetricPoints, RunLike
from mlruns_assets.warehouse.tables import METRIC_HISTORY, RUNS, STRING_MAP, UTC_TS


def _ms_to_ts(ms: int | None) -> dt.datetime | None:
    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def runs_table(run: RunLike, extracted_at: dt.datetime) -> pa.Table:
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


def metric_history_table(run_id: str, points: MetricPoints) -> pa.Table:
    """Every logged point of every metric of a run, as ``metric_history`` rows."""
    stamps = pa.array([ms * 1000 for ms in points.timestamps_ms], pa.int64())
    return pa.table(
        [
            pa.array([run_id] * len(points.keys), pa.string()),
            pa.array(points.keys, pa.string()),
            pa.array(points.steps, pa.int64()),
            stamps.cast(pa.timestamp("us", "UTC")),
            pa.array(points.values, pa.float64()),
        ],
        schema=METRIC_HISTORY.schema,
    )
