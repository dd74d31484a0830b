"""STRATOS TG6 performance measures for binary risk predictions (numpy only).

Reference: Van Calster et al., "Evaluation of performance measures in predictive AI models to
support medical decisions" (STRATOS TG6, Lancet Digital Health 2025). Throughout, ``y`` holds 0/1
outcomes and ``p`` predicted probabilities of the same length. Inputs are not validated here
(that happens upstream); measures that need both classes return NaN for a single-class ``y``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

DCA_THRESHOLDS: FloatArray = np.round(np.arange(1, 51) / 100, 2)  # 0.01 .. 0.50
RETENTION_FRACTIONS: FloatArray = np.round(np.arange(1, 21) * 0.05, 2)  # 0.05 .. 1.00

_P_CLIP = 1e-12  # keeps logit(p) finite for p of exactly 0 or 1
_IRLS_TOL = 1e-10
_IRLS_MAX_ITER = 100


def _as_yp(y: ArrayLike, p: ArrayLike) -> tuple[FloatArray, FloatArray]:
    return np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)


def _both_classes(y: FloatArray) -> bool:
    return bool(np.any(y == 1) and np.any(y == 0))


def _average_ranks(x: FloatArray) -> FloatArray:
    """1-based ranks of ``x``; tied values share the mean of the ranks they occupy."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # last rank taken by each distinct value
    return (ends - (counts - 1) / 2.0)[inverse]


def auroc(y: ArrayLike, p: ArrayLike) -> float:
    """Area under the ROC curve: P(p_case > p_control), ties counted 1/2 (Mann-Whitney U)."""
    y_, p_ = _as_yp(y, p)
    if not _both_classes(y_):
        return float("nan")
    cases = y_ == 1
    n1, n0 = float(cases.sum()), float((~cases).sum())
    u = _average_ranks(p_)[cases].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n1 * n0))


def brier(y: ArrayLike, p: ArrayLike) -> float:
    """Brier score: mean squared difference between outcome and predicted probability."""
    y_, p_ = _as_yp(y, p)
    return float(np.mean((y_ - p_) ** 2))


def scaled_brier(y: ArrayLike, p: ArrayLike) -> float:
    """Scaled Brier: 1 - Brier / Brier of predicting the prevalence for all (NaN if 1 class)."""
    y_, p_ = _as_yp(y, p)
    if not _both_classes(y_):
        return float("nan")
    return float(1.0 - brier(y_, p_) / np.mean((y_ - y_.mean()) ** 2))


def o_e_ratio(y: ArrayLike, p: ArrayLike) -> float:
    """Observed:expected ratio sum(y) / sum(p) (NaN if sum(p) == 0); target 1."""
    y_, p_ = _as_yp(y, p)
    expected = p_.sum()
    return float(y_.sum() / expected) if expected != 0 else float("nan")


def _logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, _P_CLIP, 1.0 - _P_CLIP)
    return np.asarray(np.log(q) - np.log1p(-q))


def _log_lik(y: FloatArray, eta: FloatArray) -> float:
    return float(np.sum(y * eta - np.logaddexp(0.0, eta)))  # overflow-free Bernoulli log-lik


def _irls(y: FloatArray, x: FloatArray, offset: FloatArray) -> FloatArray | None:
    """ML logistic fit of y ~ x @ beta + offset by Newton-Raphson with step halving.

    Returns None when the fit fails (singular information, non-finite values, or no convergence
    within the iteration cap) so callers report NaN instead of a meaningless estimate.
    """
    beta = np.zeros(x.shape[1])
    ll = _log_lik(y, offset)
    for _ in range(_IRLS_MAX_ITER):
        mu = 0.5 * (1.0 + np.tanh((x @ beta + offset) / 2.0))  # stable inverse logit
        info = x.T @ (x * (mu * (1.0 - mu))[:, None])
        try:
            step = np.linalg.solve(info, x.T @ (y - mu))
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.isfinite(step)):
            return None
        # Halve the step until the log-likelihood does not drop (guards against overshooting).
        for _ in range(50):
            new_ll = _log_lik(y, x @ (beta + step) + offset)
            if new_ll >= ll - 1e-12 * abs(ll):
                break
            step = step / 2.0
        else:
            return None  # no ascent along a Newton direction: numerically broken fit
        beta = beta + step
        ll = new_ll
        if np.max(np.abs(step)) < _IRLS_TOL * (1.0 + np.max(np.abs(beta))):
            return beta if np.all(np.isfinite(beta)) else None
    return None


def _separated(y: FloatArray, x: FloatArray) -> bool:
    """True if a single covariate (quasi-)completely separates the classes: no finite MLE."""
    x1, x0 = x[y == 1], x[y == 0]
    return bool(x0.max() <= x1.min() or x1.max() <= x0.min())


def calibration_slope(y: ArrayLike, p: ArrayLike) -> float:
    """Calibration slope: b of the unpenalised ML logistic fit y ~ a + b * logit(p). Target 1.

    p is clipped to [1e-12, 1 - 1e-12] before the logit so p of exactly 0 or 1 stay finite.
    NaN for single-class y, (quasi-)perfect separation by logit(p), or a fit that fails.
    """
    y_, p_ = _as_yp(y, p)
    if not _both_classes(y_):
        return float("nan")
    lp = _logit(p_)
    if _separated(y_, lp):
        return float("nan")
    beta = _irls(y_, np.column_stack([np.ones_like(lp), lp]), np.zeros_like(lp))
    return float(beta[1]) if beta is not None else float("nan")


def calibration_intercept(y: ArrayLike, p: ArrayLike) -> float:
    """Calibration-in-the-large: a of the logistic fit y ~ a + offset(logit(p)). Target 0.

    p is clipped to [1e-12, 1 - 1e-12] before the logit so p of exactly 0 or 1 stay finite.
    NaN for single-class y (no finite MLE) or a fit that fails.
    """
    y_, p_ = _as_yp(y, p)
    if not _both_classes(y_):
        return float("nan")
    lp = _logit(p_)
    beta = _irls(y_, np.ones((lp.size, 1)), lp)
    return float(beta[0]) if beta is not None else float("nan")


def net_benefit(y: ArrayLike, p: ArrayLike, threshold: float) -> float:
    """Net benefit TP/n - FP/n * t/(1-t), treating subjects with p >= t (0 < t < 1)."""
    y_, p_ = _as_yp(y, p)
    treat = p_ >= threshold
    tp = float(np.sum(treat & (y_ == 1)))
    fp = float(np.sum(treat & (y_ == 0)))
    return (tp - fp * threshold / (1.0 - threshold)) / y_.size


def net_benefit_treat_all(y: ArrayLike, threshold: float) -> float:
    """Net benefit of treating everyone: prev - (1 - prev) * t/(1-t)."""
    prev = float(np.mean(np.asarray(y, dtype=np.float64)))
    return prev - (1.0 - prev) * threshold / (1.0 - threshold)


def standardized_net_benefit(y: ArrayLike, p: ArrayLike, threshold: float) -> float:
    """Net benefit divided by prevalence (max 1); NaN when prevalence is 0."""
    prev = float(np.mean(np.asarray(y, dtype=np.float64)))
    return net_benefit(y, p, threshold) / prev if prev > 0 else float("nan")


def decision_curve(y: ArrayLike, p: ArrayLike, thresholds: ArrayLike) -> dict[str, np.ndarray]:
    """Decision curve analysis: net benefit of model / treat all / treat none per threshold.

    Also returns sensitivity (NaN without positives) and specificity (NaN without negatives)
    of the rule p >= t. Vectorised via one sort: subjects with p >= t are a suffix of sorted p.
    """
    y_, p_ = _as_yp(y, p)
    t = np.asarray(thresholds, dtype=np.float64)
    order = np.argsort(p_, kind="stable")
    p_sorted, y_sorted = p_[order], (y_[order] == 1).astype(np.float64)
    cum_pos = np.concatenate([[0.0], np.cumsum(y_sorted)])
    first = np.searchsorted(p_sorted, t, side="left")  # first index with p >= t
    n = float(y_.size)
    n1 = cum_pos[-1]
    n0 = float(np.sum(y_ == 0))
    tp = n1 - cum_pos[first]
    fp = (n - first) - tp
    odds = t / (1.0 - t)
    prev = float(np.mean(y_))
    return {
        "threshold": t,
        "net_benefit_model": tp / n - fp / n * odds,
        "net_benefit_treat_all": prev - (1.0 - prev) * odds,
        "net_benefit_treat_none": np.zeros_like(t),
        "sensitivity": tp / n1 if n1 > 0 else np.full_like(t, np.nan),
        "specificity": (n0 - fp) / n0 if n0 > 0 else np.full_like(t, np.nan),
    }


def _bin_index(p: FloatArray, n_bins: int) -> tuple[NDArray[np.intp], FloatArray]:
    """Equal-width bins [k/n, (k+1)/n) on [0, 1]; p == 1 goes into the last bin."""
    edges = np.arange(n_bins + 1) / n_bins  # exact k/n, unlike cumulative 0.1 steps
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    return idx, edges


def calibration_curve(y: ArrayLike, p: ArrayLike, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Binned calibration: mean predicted vs observed proportion per equal-width bin of p.

    All n_bins rows are returned; empty bins have count 0 and NaN means.
    """
    y_, p_ = _as_yp(y, p)
    idx, edges = _bin_index(p_, n_bins)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        pred = np.bincount(idx, weights=p_, minlength=n_bins) / count
        obs = np.bincount(idx, weights=y_, minlength=n_bins) / count
    empty = count == 0
    return {
        "bin": np.arange(n_bins),
        "bin_lower": edges[:-1],
        "bin_upper": edges[1:],
        "predicted_mean": np.where(empty, np.nan, pred),
        "observed_proportion": np.where(empty, np.nan, obs),
        "count": count,
    }


def probability_histogram(y: ArrayLike, p: ArrayLike, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Histogram of p per outcome on n_bins equal bins of [0, 1]: outcome-0 rows, then outcome-1."""
    y_, p_ = _as_yp(y, p)
    idx, edges = _bin_index(p_, n_bins)
    counts = [np.bincount(idx[y_ == k], minlength=n_bins) for k in (0, 1)]
    return {
        "outcome": np.repeat([0, 1], n_bins),
        "bin": np.tile(np.arange(n_bins), 2),
        "bin_lower": np.tile(edges[:-1], 2),
        "bin_upper": np.tile(edges[1:], 2),
        "count": np.concatenate(counts),
    }


def distribution_stats(y: ArrayLike, p: ArrayLike) -> dict[str, np.ndarray]:
    """Summary of p per outcome (rows: outcome 0, outcome 1); NaN stats for an empty outcome."""
    y_, p_ = _as_yp(y, p)
    keys = ("mean", "std", "median", "q25", "q75", "min", "max")
    out: dict[str, list[float]] = {k: [] for k in keys}
    ns = []
    for k in (0, 1):
        g = p_[y_ == k]
        ns.append(g.size)
        if g.size == 0:
            for key in keys:
                out[key].append(float("nan"))  # bounded: one row per outcome (2)
            continue
        q25, med, q75 = np.percentile(g, [25, 50, 75])
        out["mean"].append(float(g.mean()))
        out["std"].append(float(g.std(ddof=1)) if g.size > 1 else float("nan"))
        out["median"].append(float(med))
        out["q25"].append(float(q25))
        out["q75"].append(float(q75))
        out["min"].append(float(g.min()))
        out["max"].append(float(g.max()))
    result: dict[str, np.ndarray] = {"outcome": np.array([0, 1]), "n": np.array(ns)}
    result.update({k: np.array(v, dtype=np.float64) for k, v in out.items()})
    return result


def retention_curve(
    y: ArrayLike,
    p: ArrayLike,
    uncertainty: ArrayLike,
    fractions: ArrayLike = RETENTION_FRACTIONS,
    nb_threshold: float = 0.15,
) -> dict[str, np.ndarray]:
    """Performance on the fraction r of subjects with the lowest uncertainty, per r.

    n_retain = min(n, max(10, int(n * r))); ties in uncertainty keep input order (stable sort).
    Fractions whose retained subset has a single class are omitted from the result.
    """
    y_, p_ = _as_yp(y, p)
    order = np.argsort(np.asarray(uncertainty, dtype=np.float64), kind="stable")
    n = y_.size
    rows: list[tuple[float, int, float, float, float, float]] = []
    for r in np.asarray(fractions, dtype=np.float64):
        keep = order[: min(n, max(10, int(n * r)))]
        ys, ps = y_[keep], p_[keep]
        if not _both_classes(ys):
            continue
        rows.append(  # bounded: one row per retention fraction (20)
            (
                float(r),
                int(keep.size),
                auroc(ys, ps),
                brier(ys, ps),
                scaled_brier(ys, ps),
                net_benefit(ys, ps, nb_threshold),
            )
        )
    cols = list(zip(*rows, strict=True)) if rows else [()] * 6
    names = ("retention_fraction", "n_retained", "auroc", "brier", "scaled_brier", "net_benefit")
    return {
        name: np.array(col, dtype=np.int64 if name == "n_retained" else np.float64)
        for name, col in zip(names, cols, strict=True)
    }


def bootstrap_ci(values: ArrayLike) -> tuple[float, float]:
    """Percentile 95% CI: 2.5th and 97.5th percentiles of the finite bootstrap values."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(v, [2.5, 97.5])
    return float(lo), float(hi)


def read_case_study(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read (y, p) from the STRATOS case-study table (header row with Outcome1 and pmalwo)."""
    lines = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    header = [h.strip('"') for h in lines[0]]
    iy, ip = header.index("Outcome1"), header.index("pmalwo")
    rows = lines[1:]
    # R's write.table may prefix each row with a row name that has no header field.
    shift = 1 if rows and len(rows[0]) == len(header) + 1 else 0
    y = np.array([int(r[iy + shift]) for r in rows], dtype=np.int64)
    p = np.array([float(r[ip + shift]) for r in rows], dtype=np.float64)
    return y, p
