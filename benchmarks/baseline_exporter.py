"""REFERENCE ONLY - variant (a) of the benchmark: the original exporter's approach, re-implemented.

This is NOT how the project extracts runs; it exists so the benchmark can measure what the
project replaced. It reproduces the original ``StreamingDuckDBExporter`` pattern (see
/work/shared/seeds/): for each run, load the metrics pickle with plain ``pickle.load``, compute
the measures, and insert every row with its own ``conn.execute("INSERT ... VALUES (?, ...)")``
in autocommit mode (no per-run transaction, no Arrow). It computes the same measures with the
same functions (``mlruns_assets.transform.stratos``) and writes the same tables (same DDL), so its
``essential_metrics`` can be compared value for value with the project's. Unlike the project it
runs no validation checks and has no memory guard, as the original had none in use.

Plain ``pickle`` is acceptable only here: the benchmark reads the store it generated itself.

    python benchmarks/baseline_exporter.py --tracking-uri URI --experiment NAME --db PATH
        [--subject-map CSV] [--imports-only]

Prints one JSON line: runs, rows, seconds and the time spent loading, computing and inserting.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import pickle
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import duckdb
import numpy as np
from mlflow.entities import Run, ViewType
from mlflow.tracking import MlflowClient

from mlruns_assets.runtime.settings import Kind
from mlruns_assets.source.tracking import slugify
from mlruns_assets.transform import stratos
from mlruns_assets.transform.run_names import parse_run_name
from mlruns_assets.warehouse.catalog import tables_for_kind
from mlruns_assets.warehouse.tables import create_table_sql

SUPPLEMENTARY = ("F1", "accuracy", "AUPR", "sensitivity", "specificity", "PPV", "NPV")
NET_BENEFIT_THRESHOLDS = (0.05, 0.10, 0.15, 0.20)


def _value(v: Any) -> Any:
    """A SQL parameter: numpy scalars to Python, NaN/inf to NULL."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class RowWriter:
    """One ``INSERT`` statement per row, in autocommit mode (as the original exporter did)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, schema: str) -> None:
        self.conn, self.schema = conn, schema
        self.rows = 0
        self.seconds = 0.0

    def insert(self, table: str, columns: Sequence[str], row: Sequence[Any]) -> None:
        started = time.perf_counter()
        names = ", ".join(f'"{c}"' for c in columns)
        marks = ", ".join("?" for _ in columns)
        self.conn.execute(
            f'INSERT INTO "{self.schema}"."{table}" ({names}) VALUES ({marks})',
            [_value(v) for v in row],
        )
        self.rows += 1
        self.seconds += time.perf_counter() - started

    def insert_columns(self, table: str, run_id: str, columns: dict[str, Iterable[Any]]) -> None:
        """Row by row from a dict of equal-length columns."""
        names = ["run_id", *columns]
        for values in zip(*columns.values(), strict=True):
            self.insert(table, names, (run_id, *values))


def _ts(ms: int | None) -> dt.datetime | None:
    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def _local_metrics_pickle(run: Run) -> Path:
    parsed = urlparse(run.info.artifact_uri)
    folder = Path(unquote(parsed.path)) / "metrics"
    (path,) = folder.glob("metrics_*.pickle")
    return path


def _cohort(y: np.ndarray, p: np.ndarray, std: np.ndarray) -> dict[str, Any]:
    order = np.argsort(np.where(np.isfinite(std), std, np.inf), kind="stable")
    n = y.size
    kept = np.array([min(n, max(10, int(n * r))) for r in stratos.RETENTION_FRACTIONS])
    cum_y, cum_p = np.cumsum(y[order]), np.cumsum(p[order])
    cum_s = np.cumsum(np.nan_to_num(std[order]))
    k = kept.astype(np.float64)
    return {
        "retention_fraction": stratos.RETENTION_FRACTIONS,
        "n_retained": kept,
        "n_events": cum_y[kept - 1],
        "prevalence": cum_y[kept - 1] / k,
        "mean_y_prob": cum_p[kept - 1] / k,
        "mean_uncertainty": cum_s[kept - 1] / k,
    }


def export_run(
    client: MlflowClient, run: Run, out: RowWriter, subject_map: dict[str, str] | None
) -> tuple[float, float]:
    """Load, compute and insert one run. Returns (load seconds, compute seconds)."""
    info, run_id = run.info, run.info.run_id
    now = dt.datetime.now(tz=dt.UTC)
    out.insert(
        "runs",
        [
            "run_id",
            "run_name",
            "experiment_id",
            "status",
            "start_time",
            "end_time",
            "artifact_uri",
            "params",
            "tags",
            "extracted_at",
        ],
        [
            run_id,
            info.run_name,
            info.experiment_id,
            info.status,
            _ts(info.start_time),
            _ts(info.end_time),
            info.artifact_uri,
            {"key": list(run.data.params), "value": list(run.data.params.values())},
            {"key": list(run.data.tags), "value": list(run.data.tags.values())},
            now,
        ],
    )
    for key in sorted(run.data.metrics):
        for m in client.get_metric_history(run_id, key):
            out.insert(
                "metric_history",
                ["run_id", "key", "step", "timestamp", "value"],
                [run_id, key, m.step, _ts(m.timestamp), m.value],
            )

    started = time.perf_counter()
    with _local_metrics_pickle(run).open("rb") as fh:
        metrics = pickle.load(fh)  # safe: benchmark reads the store it generated
    loaded = time.perf_counter()

    subjectwise = metrics["subjectwise_stats"]["test"]
    codes = np.asarray(subjectwise["subject_code"]).astype(str)
    y = np.asarray(subjectwise["labels"], dtype=np.int64)
    p = np.asarray(subjectwise["preds"]["y_pred_proba"]["mean"], dtype=np.float64)
    std = np.asarray(subjectwise["preds"]["y_pred_proba"]["std"], dtype=np.float64)
    if subject_map is not None:
        codes = np.array([subject_map[c] for c in codes])
    scalars = metrics["metrics_stats"]["test"]["metrics"]["scalars"]
    n, events = int(y.size), int(y.sum())
    both = 0 < events < n
    lo, hi = (
        stratos.bootstrap_ci(metrics["metrics_iter"]["test"]["metrics"]["scalars"]["AUROC"])
        if both
        else (math.nan, math.nan)
    )
    names = parse_run_name(info.run_name)
    essential = {
        "run_name": info.run_name,
        "classifier": names.classifier,
        "featurization": names.featurization,
        "imputation_method": names.imputation_method,
        "outlier_method": names.outlier_method,
        "auroc": stratos.auroc(y, p),
        "auroc_ci_lower": lo,
        "auroc_ci_upper": hi,
        "calibration_slope": stratos.calibration_slope(y, p),
        "calibration_intercept": stratos.calibration_intercept(y, p),
        "o_e_ratio": stratos.o_e_ratio(y, p),
        "brier_score": stratos.brier(y, p),
        "scaled_brier": stratos.scaled_brier(y, p),
        **{
            f"net_benefit_{round(t * 100)}pct": stratos.net_benefit(y, p, t)
            for t in NET_BENEFIT_THRESHOLDS
        },
        "n_test": n,
        "n_events": events,
        "prevalence": events / n,
        "extracted_at": now,
    }
    supplementary = {
        name.lower(): float(scalars.get(name, {}).get("mean", math.nan)) for name in SUPPLEMENTARY
    }
    curves = {
        "calibration_curves": stratos.calibration_curve(y, p),
        "probability_distributions": stratos.probability_histogram(y, p),
        "dca_curves": stratos.decision_curve(y, p, stratos.DCA_THRESHOLDS),
        "predictions": {"subject_code": codes, "y_true": y, "y_prob": p, "y_prob_std": std},
        "retention_metrics": stratos.retention_curve(y, p, std),
        "cohort_metrics": _cohort(y, p, std),
        "distribution_stats": stratos.distribution_stats(y, p),
    }
    computed = time.perf_counter()
    del metrics

    out.insert("essential_metrics", ["run_id", *essential], [run_id, *essential.values()])
    out.insert(
        "supplementary_metrics", ["run_id", *supplementary], [run_id, *supplementary.values()]
    )
    for table, columns in curves.items():
        out.insert_columns(table, run_id, columns)
    return loaded - started, computed - loaded


def _load_subject_map(path: str | None) -> dict[str, str] | None:
    if not path:
        return None
    with open(path, newline="") as fh:
        return {row["original"]: row["anonymized"] for row in csv.DictReader(fh)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--subject-map")
    parser.add_argument("--imports-only", action="store_true", help="import, then exit")
    args = parser.parse_args(argv)
    if args.imports_only:
        return 0
    started = time.perf_counter()
    client = MlflowClient(args.tracking_uri)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        parser.error(f"no experiment {args.experiment!r} in {args.tracking_uri}")
    schema = slugify(args.experiment)
    subject_map = _load_subject_map(args.subject_map)
    conn = duckdb.connect(args.db)
    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    for spec in tables_for_kind(Kind.CLASSIFICATION):
        conn.execute(create_table_sql(schema, spec))
    out = RowWriter(conn, schema)
    load = compute = 0.0
    done = 0
    token: str | None = None
    while True:
        page = client.search_runs(
            [experiment.experiment_id],
            filter_string="attributes.status = 'FINISHED'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1000,
            order_by=["attributes.end_time ASC"],
            page_token=token,
        )
        for run in page:
            run_load, run_compute = export_run(client, run, out, subject_map)
            load, compute, done = load + run_load, compute + run_compute, done + 1
        token = page.token
        if not token:
            break
    conn.close()
    seconds = time.perf_counter() - started
    result = {
        "runs": done,
        "rows": out.rows,
        "seconds": seconds,
        "load_s": load,
        "compute_s": compute,
        "insert_s": out.seconds,
        "rows_per_s": out.rows / out.seconds if out.seconds else None,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
