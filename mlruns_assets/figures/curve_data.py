"""One run's curve data, read from its STRATOS tables, and the two intervals the tables do not
store: a Wilson interval per calibration bin (from its count and observed proportion) and a
pointwise ROC band from a seeded, stratified bootstrap of the stored per-subject predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
Z95 = 1.959963984540054
ROC_BOOTSTRAPS = 200  # percentiles of 200 resamples: a band, not a published CI
ROC_GRID = np.linspace(0.0, 1.0, 101)
# (name, title): the order they are shown in, the metadata keys and the report's captions.
CURVES = (
    ("calibration", "Calibration curve"),
    ("decision_curve", "Decision curve"),
    ("roc", "ROC curve"),
    ("probability_distributions", "Predicted probabilities by outcome"),
)


@dataclass(frozen=True)
class RunCurves:
    """Everything the four pictures of one run need, as arrays."""

    run_id: str
    run_name: str | None
    auroc: float | None
    auroc_ci: tuple[float | None, float | None]
    calibration: dict[str, FloatArray]  # predicted_mean, observed_proportion, count
    decision: dict[str, FloatArray]  # threshold, model, treat_all, treat_none
    histogram: dict[str, FloatArray]  # outcome, bin_lower, bin_upper, count
    y_true: FloatArray
    y_prob: FloatArray


def _columns(conn: duckdb.DuckDBPyConnection, sql: str, run_id: str) -> dict[str, FloatArray]:
    rel = conn.execute(sql, [run_id])
    names = [d[0] for d in rel.description or []]
    rows = rel.fetchall()
    return {
        name: np.array([np.nan if r[i] is None else r[i] for r in rows], dtype=np.float64)
        for i, name in enumerate(names)
    }


def read_run_curves(conn: duckdb.DuckDBPyConnection, schema: str, run_id: str) -> RunCurves | None:
    """The run's curve data from ``schema``'s tables, or None when the run has no STRATOS rows."""
    s = f'"{schema}"'
    head = conn.execute(
        f"SELECT run_name, auroc, auroc_ci_lower, auroc_ci_upper FROM {s}.essential_metrics "
        "WHERE run_id = ?",
        [run_id],
    ).fetchone()
    if head is None:
        return None
    predictions = _columns(
        conn, f"SELECT y_true, y_prob FROM {s}.predictions WHERE run_id = ? ORDER BY rowid", run_id
    )
    return RunCurves(
        run_id=run_id,
        run_name=head[0],
        auroc=head[1],
        auroc_ci=(head[2], head[3]),
        calibration=_columns(
            conn,
            f"SELECT predicted_mean, observed_proportion, count FROM {s}.calibration_curves "
            "WHERE run_id = ? ORDER BY bin",
            run_id,
        ),
        decision=_columns(
            conn,
            f"SELECT threshold, net_benefit_model AS model, net_benefit_treat_all AS treat_all, "
            f"net_benefit_treat_none AS treat_none FROM {s}.dca_curves WHERE run_id = ? "
            "ORDER BY threshold",
            run_id,
        ),
        histogram=_columns(
            conn,
            f"SELECT outcome, bin_lower, bin_upper, count FROM {s}.probability_distributions "
            "WHERE run_id = ? ORDER BY outcome, bin",
            run_id,
        ),
        y_true=predictions["y_true"],
        y_prob=predictions["y_prob"],
    )


def wilson_interval(events: FloatArray, n: FloatArray) -> tuple[FloatArray, FloatArray]:
    """95 % Wilson score interval of a proportion events/n, elementwise; NaN where n is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p = events / n
        denom = 1.0 + Z95**2 / n
        centre = (p + Z95**2 / (2 * n)) / denom
        half = Z95 * np.sqrt(p * (1 - p) / n + Z95**2 / (4 * n**2)) / denom
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def roc_curve(y: FloatArray, p: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0) to
    (1, 1); tied probabilities form one step."""
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    last_of_tie = np.r_[np.nonzero(np.diff(p_sorted))[0], p_sorted.size - 1]
    tp = np.cumsum(y_sorted)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    n1, n0 = float(y.sum()), float(y.size - y.sum())
    return np.r_[0.0, fp / n0], np.r_[0.0, tp / n1]


def roc_band(
    y: FloatArray, p: FloatArray, n_boot: int = ROC_BOOTSTRAPS, seed: int = 0
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(FPR grid, 2.5th and 97.5th percentile of the TPR) over bootstrap resamples of the
    subjects, cases and controls resampled separately so each resample keeps both classes."""
    rng = np.random.default_rng(seed)
    cases, controls = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    tprs = np.empty((n_boot, ROC_GRID.size))
    for b in range(n_boot):
        idx = np.r_[rng.choice(cases, cases.size), rng.choice(controls, controls.size)]
        fpr, tpr = roc_curve(y[idx], p[idx])
        # The upper envelope at each FPR: a vertical step takes its top value.
        tprs[b] = np.interp(ROC_GRID, fpr, tpr, left=0.0, right=1.0)
    lower, upper = np.percentile(tprs, [2.5, 97.5], axis=0)
    return ROC_GRID, lower, upper


def has_both_classes(curves: RunCurves) -> bool:
    """An ROC needs cases and controls; a single-class test set has none."""
    events = float(np.sum(curves.y_true))
    return 0 < events < curves.y_true.size
