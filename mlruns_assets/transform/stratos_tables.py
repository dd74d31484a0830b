"""STRATOS performance tables of one classification run, built from its metrics pickle.

Point estimates come from the per-subject predictions (``subjectwise_stats['test']``: the
bootstrap-mean probability and the label per subject), so every measure of a run stands on one
base. The AUROC confidence interval comes from the run's bootstrap distribution.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from mlruns_assets.runtime.errors import ExtractionError
from mlruns_assets.source.run_data import RunLike
from mlruns_assets.transform import stratos
from mlruns_assets.transform.arrays import dig
from mlruns_assets.transform.run_names import parse_run_name
from mlruns_assets.transform.subjects import anonymize
from mlruns_assets.warehouse.stratos_schema import (
    CALIBRATION_CURVES,
    COHORT_METRICS,
    DCA_CURVES,
    DISTRIBUTION_STATS,
    ESSENTIAL_METRICS,
    PREDICTIONS,
    PROBABILITY_DISTRIBUTIONS,
    RETENTION_METRICS,
    SUPPLEMENTARY_METRICS,
)
from mlruns_assets.warehouse.tables import TableSpec

SUPPLEMENTARY_SOURCE = {
    "f1": "F1",
    "accuracy": "accuracy",
    "aupr": "AUPR",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "ppv": "PPV",
    "npv": "NPV",
}
NET_BENEFIT_THRESHOLDS = {5: 0.05, 10: 0.10, 15: 0.15, 20: 0.20}


def _vector(value: Any, name: str, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ExtractionError(f"{where}: {name} is not numeric ({exc})") from exc
    if arr.ndim != 1:
        raise ExtractionError(
            f"{where}: {name} has shape {arr.shape}, expected one value per subject"
        )
    return arr


def read_test_predictions(
    metrics: Any, where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(subject codes, y, p, p std) of the test split, validated. Nothing is invented: NaN or
    out-of-range probabilities, labels outside {0, 1} and length mismatches fail the run."""
    base = ("subjectwise_stats", "test")
    codes = np.asarray(dig(metrics, (*base, "subject_code"), where))
    y = _vector(dig(metrics, (*base, "labels"), where), "labels", where)
    p = _vector(
        dig(metrics, (*base, "preds", "y_pred_proba", "mean"), where), "y_pred_proba", where
    )
    std = _vector(
        dig(metrics, (*base, "preds", "y_pred_proba", "std"), where), "y_pred_proba std", where
    )
    lengths = {
        "subject_code": codes.shape[0] if codes.ndim else 0,
        "labels": y.size,
        "y_pred_proba.mean": p.size,
        "y_pred_proba.std": std.size,
    }
    if len(set(lengths.values())) != 1:
        raise ExtractionError(f"{where}: arrays of different lengths {lengths}")
    if y.size == 0:
        raise ExtractionError(f"{where}: the test split has no subjects")
    if not np.all(np.isfinite(p)):
        raise ExtractionError(
            f"{where}: {int(np.sum(~np.isfinite(p)))} NaN or infinite probabilities"
        )
    if np.any((p < 0) | (p > 1)):
        raise ExtractionError(f"{where}: probabilities outside [0, 1]")
    bad = ~np.isin(y, (0.0, 1.0))
    if np.any(bad):
        raise ExtractionError(f"{where}: labels outside {{0, 1}}: {sorted(set(y[bad].tolist()))}")
    return codes, y.astype(np.int64), p, std


def _scalar_stats(metrics: Any, name: str) -> Mapping[str, Any] | None:
    try:
        stats = metrics["metrics_stats"]["test"]["metrics"]["scalars"][name]
    except (KeyError, TypeError, IndexError):
        return None
    return stats if isinstance(stats, Mapping) else None


def auroc_ci(metrics: Any) -> tuple[float, float]:
    """2.5th / 97.5th percentiles of the bootstrap AUROCs, else the stored CI, else NaN."""
    try:
        values = metrics["metrics_iter"]["test"]["metrics"]["scalars"]["AUROC"]
        return stratos.bootstrap_ci(np.asarray(values, dtype=np.float64))
    except (KeyError, TypeError, ValueError):
        stats = _scalar_stats(metrics, "AUROC")
        ci = np.asarray(stats.get("ci", (np.nan, np.nan)), dtype=np.float64) if stats else None
        return (float(ci[0]), float(ci[1])) if ci is not None and ci.size == 2 else (np.nan, np.nan)


def _nullable(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _frame(spec: TableSpec, run_id: str, columns: Mapping[str, Any]) -> pa.Table:
    n = len(next(iter(columns.values())))
    data = {"run_id": pa.array([run_id] * n, pa.string())}  # bounded: one column per field
    for field in spec.schema:
        if field.name == "run_id":
            continue
        values = columns[field.name]
        if pa.types.is_floating(field.type):
            arr = np.asarray(values, dtype=np.float64)
            data[field.name] = pa.array(arr, field.type, mask=~np.isfinite(arr))
        else:
            data[field.name] = pa.array(values, field.type)
    return pa.table(data, schema=spec.schema)


def build_stratos_tables(
    run: RunLike,
    metrics: Any,
    where: str,
    subject_map: dict[str, str] | None,
    extracted_at: dt.datetime,
) -> tuple[dict[TableSpec, pa.Table], list[str]]:
    """Every STRATOS table of a run, and notes for the UI (e.g. why a measure is NULL)."""
    codes, y, p, std = read_test_predictions(metrics, where)
    codes = anonymize(codes, subject_map, where)
    run_id = run.info.run_id
    notes: list[str] = []
    n, events = int(y.size), int(y.sum())
    if events in (0, n):
        notes.append(
            "single-class test set: AUROC, its CI, calibration slope and intercept, scaled Brier "
            "and retention measures are NULL"
        )
    ci = auroc_ci(metrics) if 0 < events < n else (np.nan, np.nan)
    names = parse_run_name(run.info.run_name)
    essential: dict[str, list[Any]] = {
        "run_name": [run.info.run_name],
        "classifier": [names.classifier],
        "featurization": [names.featurization],
        "imputation_method": [names.imputation_method],
        "outlier_method": [names.outlier_method],
        "auroc": [stratos.auroc(y, p)],
        "auroc_ci_lower": [ci[0]],
        "auroc_ci_upper": [ci[1]],
        "calibration_slope": [stratos.calibration_slope(y, p)],
        "calibration_intercept": [stratos.calibration_intercept(y, p)],
        "o_e_ratio": [stratos.o_e_ratio(y, p)],
        "brier_score": [stratos.brier(y, p)],
        "scaled_brier": [stratos.scaled_brier(y, p)],
        **{
            f"net_benefit_{pct}pct": [stratos.net_benefit(y, p, t)]
            for pct, t in NET_BENEFIT_THRESHOLDS.items()
        },
        "n_test": [n],
        "n_events": [events],
        "prevalence": [events / n],
        "extracted_at": [extracted_at],
    }
    supplementary = {
        col: [float((_scalar_stats(metrics, src) or {}).get("mean", np.nan))]
        for col, src in SUPPLEMENTARY_SOURCE.items()
    }
    retention = stratos.retention_curve(y, p, std)
    cohort = _cohort(y, p, std)
    tables = {
        ESSENTIAL_METRICS: _frame(ESSENTIAL_METRICS, run_id, essential),
        SUPPLEMENTARY_METRICS: _frame(SUPPLEMENTARY_METRICS, run_id, supplementary),
        CALIBRATION_CURVES: _frame(CALIBRATION_CURVES, run_id, stratos.calibration_curve(y, p)),
        PROBABILITY_DISTRIBUTIONS: _frame(
            PROBABILITY_DISTRIBUTIONS, run_id, stratos.probability_histogram(y, p)
        ),
        DCA_CURVES: _frame(
            DCA_CURVES, run_id, stratos.decision_curve(y, p, stratos.DCA_THRESHOLDS)
        ),
        PREDICTIONS: _frame(
            PREDICTIONS,
            run_id,
            {"subject_code": codes, "y_true": y, "y_prob": p, "y_prob_std": std},
        ),
        RETENTION_METRICS: _frame(RETENTION_METRICS, run_id, retention),
        COHORT_METRICS: _frame(COHORT_METRICS, run_id, cohort),
        DISTRIBUTION_STATS: _frame(DISTRIBUTION_STATS, run_id, stratos.distribution_stats(y, p)),
    }
    return tables, notes


def _cohort(y: np.ndarray, p: np.ndarray, std: np.ndarray) -> dict[str, np.ndarray]:
    """Who is kept at each retention fraction (lowest uncertainty first): size, events,
    prevalence, mean probability and mean uncertainty of the retained cohort."""
    order = np.argsort(np.where(np.isfinite(std), std, np.inf), kind="stable")
    n = y.size
    kept = [min(n, max(10, int(n * r))) for r in stratos.RETENTION_FRACTIONS]
    cum_y = np.cumsum(y[order])
    cum_p = np.cumsum(p[order])
    cum_s = np.cumsum(np.nan_to_num(std[order]))
    idx = np.asarray(kept) - 1
    k = np.asarray(kept, dtype=np.float64)
    return {
        "retention_fraction": stratos.RETENTION_FRACTIONS,
        "n_retained": np.asarray(kept),
        "n_events": cum_y[idx],
        "prevalence": cum_y[idx] / k,
        "mean_y_prob": cum_p[idx] / k,
        "mean_uncertainty": cum_s[idx] / k,
    }
