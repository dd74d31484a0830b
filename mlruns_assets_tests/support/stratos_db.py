"""A results database with real STRATOS tables, written the way the extraction writes them
(``build_stratos_tables`` then one ``replace_partition`` per run), without an MLflow store."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import mlflow
import numpy as np

from mlruns_assets.demo.pickles import build_metrics_pickle
from mlruns_assets.transform.stratos_tables import build_stratos_tables
from mlruns_assets.warehouse.duckdb_writer import replace_partition

SCHEMA = "classification"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class FakeRun:
    """A run to write: its id, name, and how well its predictions separate the classes."""

    run_id: str
    name: str
    separation: float = 1.5
    n: int = 60
    single_class: bool = False


def mlflow_run(run_id: str, name: str) -> mlflow.entities.Run:
    info = mlflow.entities.RunInfo(
        run_id=run_id,
        experiment_id="1",
        user_id="u",
        status="FINISHED",
        start_time=0,
        end_time=1,
        lifecycle_stage="active",
        run_name=name,
        artifact_uri="file:///x",
    )
    return mlflow.entities.Run(info, mlflow.entities.RunData())


def predictions(run: FakeRun, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.zeros(run.n, dtype=np.int64) if run.single_class else (np.arange(run.n) % 3 == 0)
    y = y.astype(np.int64)
    score = rng.normal(size=run.n) + run.separation * y
    return y, 1.0 / (1.0 + np.exp(-(score - 1.0)))


def write_runs(conn: duckdb.DuckDBPyConnection, runs: list[FakeRun], schema: str = SCHEMA) -> None:
    """Every run's STRATOS tables in ``schema``, one transaction per run."""
    for seed, run in enumerate(runs):
        y, p = predictions(run, seed)
        rng = np.random.default_rng(seed)
        codes = np.array([f"S{i:03d}" for i in range(run.n)])
        samples = np.clip(p[:, None] + rng.normal(0, 0.03, (run.n, 20)), 0.001, 0.999)
        metrics = build_metrics_pickle(codes, y, samples, rng)
        tables, _ = build_stratos_tables(mlflow_run(run.run_id, run.name), metrics, "m", None, NOW)
        replace_partition(conn, schema, run.run_id, tables)


def database_with_runs(path: Path, runs: list[FakeRun], schema: str = SCHEMA) -> Path:
    with duckdb.connect(str(path)) as conn:
        write_runs(conn, runs, schema)
    return path


STANDARD_RUNS = [
    FakeRun("run_a", "CATBOOST_eval-auc__simple1.0__SAITS__pupil-gt", separation=2.5),
    FakeRun("run_b", "XGBOOST_eval-auc__simple1.0__linear__LOF", separation=0.8),
    FakeRun("run_c", "TabPFN_eval-auc__simple1.0__MOMENT-zeroshot__pupil-gt", separation=1.6),
    FakeRun("run_d", "LogisticRegression_eval-auc__simple1.0__CSDI__LOF", single_class=True),
]
