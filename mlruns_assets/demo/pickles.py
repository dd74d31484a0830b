"""The pickles of the demo store, shaped like the study's: built with numpy, never logged here.

``build_metrics_pickle`` -> ``metrics_{run_name}.pickle`` (B = bootstrap iterations):

- ``metrics_iter[split].metrics``: ``scalars[name]`` lists of B values, ``arrays[curve][var]``
  of shape (200, B) (``calibration_curve``: (10, B)); the test split also carries
  ``preds.arrays.predictions.{y_pred_proba, y_pred, label}``, each (n_test, B).
- ``metrics_stats[split].metrics``: ``scalars[name]`` = ``{n, mean, std, ci}`` and
  ``arrays[curve][var]`` = ``{mean, std, ci}``; curves ``AUROC{fpr, tpr, thresholds}``,
  ``AUPR{precision, recall, thresholds}``, ``calibration_curve{prob_pred, prob_true}``.
- ``subjectwise_stats['test']``: ``subject_code`` and ``labels`` (n_test,), ``preds[var]`` =
  ``{mean, std}`` over the bootstrap axis, ``uq.scalars``.
- ``subject_global_stats[split][key][var][label]``: scalar stats.

``build_dict_arrays`` -> ``dictArrays_{run_name}.pickle``: ``x_{split}``, ``x_{split}_w``,
``y_{split}``, ``subject_codes_{split}``, ``feature_names``, ``X_idxs`` (no ``y_pred_proba_mean``).

``build_imputation_pickle`` -> ``imputation_{model}.pickle``:
``source_data.df[split].{metadata.subject_code, time.time, data.pupil_raw}`` (n, T) and
``model_artifacts.imputation[split].imputation_dict.imputation.mean`` (n, T, 1).

Choices where the study's format leaves room:

- ``preds.arrays.predictions.label`` is the true label repeated over the bootstrap axis.
- The train split has no predictions in the demo: its metrics come from one resample of the test
  subjects with sharpened (overfitted) probabilities; only the test split carries ``preds``.
- Threshold metrics use p >= 0.5. ``PPV_prev``/``NPV_prev`` are PPV/NPV re-weighted to a population
  prevalence of 3.54%. ``tpAUC`` is the two-way partial AUC (TPR >= 0.5, FPR <= 0.5) normalised
  to [0, 1]. ``ECE`` uses 10 equal-width bins. Undefined values (e.g. AUROC of a single-class set,
  empty calibration bins) are NaN.
- Curves are sampled on fixed grids: ROC on 200 FPR points, PR on 200 recall points,
  calibration on 10 equal-width bins. ``ci`` is the [2.5, 97.5] percentile pair, NaN where
  ``std == 0`` (scalars too). Scalar stats carry ``n`` = number of finite iterations.
- ``uq.scalars``: ``mean_std``, ``median_std``, ``max_std`` of the per-subject bootstrap std of
  ``y_pred_proba``. ``subject_global_stats``: for keys ``y_pred_proba`` and ``uncertainty``,
  ``mean``/``std`` over the subjects of each (int) label.
- ``dictArrays``: 8 pupillometry features; ``x_*_w`` are per-value weights in (0, 1] (share of
  non-imputed samples behind each feature); ``X_idxs`` = {split: row indices into the pool}.
- Imputation pickles also carry ``data.pupil_raw`` with NaN gaps where outliers were removed; the
  signal is a baseline-normalised pupil light response.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

SCALAR_NAMES = (
    "AUROC",
    "AUPR",
    "F1",
    "sensitivity",
    "specificity",
    "PPV",
    "NPV",
    "accuracy",
    "accuracy_balanced",
    "PPV_prev",
    "NPV_prev",
    "tpAUC",
    "Brier",
    "ECE",
)
FEATURE_NAMES = tuple(f"{c}_{f}" for c in ("Blue", "Red") for f in ("MaxConstr", "PIPR", "Lat"))
N_GRID, N_BINS = 200, 10
POPULATION_PREVALENCE = 0.0354


def sigmoid(x: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-x))


def _auroc(y: IntArray, p: FloatArray) -> FloatArray:
    """Mann-Whitney AUROC per bootstrap column (ties count 1/2)."""
    pos, neg = y == 1, y != 1
    out = np.full(p.shape[1], np.nan)
    if pos.any() and neg.any():
        for b in range(p.shape[1]):
            s, q = np.sort(p[neg, b]), p[pos, b]
            lo, hi = np.searchsorted(s, q, "left"), np.searchsorted(s, q, "right")
            out[b] = (lo + 0.5 * (hi - lo)).sum() / (q.size * s.size)
    return out


def _trapezoid(y: FloatArray, x: FloatArray) -> FloatArray:
    area: FloatArray = ((y[1:] + y[:-1]) / 2 * np.diff(x)[:, None]).sum(axis=0)
    return area


def _curves(
    y: IntArray, p: FloatArray
) -> tuple[dict[str, dict[str, FloatArray]], FloatArray, FloatArray]:
    """ROC and PR curves on fixed 200-point grids, plus AUPR and tpAUC per column."""
    b = p.shape[1]
    order = np.argsort(-p, axis=0, kind="stable")
    ps = np.take_along_axis(p, order, axis=0)
    ys = (y[order] == 1).astype(np.float64)
    tps, fps = np.cumsum(ys, axis=0), np.cumsum(1.0 - ys, axis=0)
    n1, n0 = tps[-1, 0], fps[-1, 0]
    roc = {k: np.full((N_GRID, b), np.nan) for k in ("fpr", "tpr", "thresholds")}
    pr = {k: np.full((N_GRID, b), np.nan) for k in ("precision", "recall", "thresholds")}
    aupr, tpauc = np.full(b, np.nan), np.full(b, np.nan)
    if n1 > 0 and n0 > 0:
        grid, zeros = np.linspace(0.0, 1.0, N_GRID), np.zeros((1, b))
        fpr, tpr = np.vstack([zeros, fps / n0]), np.vstack([zeros, tps / n1])
        thr = np.vstack([np.ones((1, b)), ps])
        precision, recall = tps / (tps + fps), tps / n1
        roc["fpr"][:], pr["recall"][:] = grid[:, None], grid[:, None]
        for j in range(b):
            roc["tpr"][:, j] = np.interp(grid, fpr[:, j], tpr[:, j])
            roc["thresholds"][:, j] = np.interp(grid, fpr[:, j], thr[:, j])
            pr["precision"][:, j] = np.interp(grid, recall[:, j], precision[:, j])
            pr["thresholds"][:, j] = np.interp(grid, recall[:, j], ps[:, j])
        aupr = (ys * precision).sum(axis=0) / n1
        keep = grid <= 0.5
        tpauc = _trapezoid(np.maximum(roc["tpr"][keep] - 0.5, 0.0), grid[keep]) / 0.25
    return {"AUROC": roc, "AUPR": pr}, aupr, tpauc


def _calibration(y: IntArray, p: FloatArray) -> tuple[dict[str, FloatArray], FloatArray]:
    """10-bin calibration curve per column and the expected calibration error."""
    idx = np.minimum((p * N_BINS).astype(np.int64), N_BINS - 1)
    yy = np.broadcast_to((y == 1)[:, None], p.shape)
    pred, true = np.full((N_BINS, p.shape[1]), np.nan), np.full((N_BINS, p.shape[1]), np.nan)
    ece = np.zeros(p.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        for k in range(N_BINS):
            mask = idx == k
            count = mask.sum(axis=0)
            pred[k], true[k] = (p * mask).sum(axis=0) / count, (yy & mask).sum(axis=0) / count
            ece += np.where(count > 0, np.abs(pred[k] - true[k]) * count / p.shape[0], 0.0)
    return {"prob_pred": pred, "prob_true": true}, ece


def _threshold_metrics(y: IntArray, p: FloatArray) -> dict[str, FloatArray]:
    yp, yt = p >= 0.5, (y == 1)[:, None]
    tp, fp = (yp & yt).sum(axis=0) * 1.0, (yp & ~yt).sum(axis=0) * 1.0
    fn, tn = (~yp & yt).sum(axis=0) * 1.0, (~yp & ~yt).sum(axis=0) * 1.0
    prev = POPULATION_PREVALENCE
    with np.errstate(invalid="ignore", divide="ignore"):
        sens, spec = tp / (tp + fn), tn / (tn + fp)
        return {
            "F1": 2 * tp / (2 * tp + fp + fn),
            "sensitivity": sens,
            "specificity": spec,
            "PPV": tp / (tp + fp),
            "NPV": tn / (tn + fn),
            "accuracy": (tp + tn) / p.shape[0],
            "accuracy_balanced": (sens + spec) / 2,
            "PPV_prev": sens * prev / (sens * prev + (1 - spec) * (1 - prev)),
            "NPV_prev": spec * (1 - prev) / (spec * (1 - prev) + (1 - sens) * prev),
        }


def _stats(values: FloatArray) -> dict[str, Any]:
    """mean/std/[2.5, 97.5] percentile CI over the last (bootstrap) axis, ignoring NaN."""
    ordered, count = np.sort(values, axis=-1), np.isfinite(values).sum(axis=-1)
    ci = []
    for q in (0.025, 0.975):  # numpy's default "linear" percentile, vectorised over rows
        pos = np.maximum(count - 1, 0) * q
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
        v_lo = np.take_along_axis(ordered, lo[..., None], axis=-1)[..., 0]
        v_hi = np.take_along_axis(ordered, hi[..., None], axis=-1)[..., 0]
        ci.append(np.where(count > 0, v_lo + (pos - lo) * (v_hi - v_lo), np.nan))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = np.nanmean(values, axis=-1), np.nanstd(values, axis=-1)
    return {"mean": mean, "std": std, "ci": np.where(std == 0, np.nan, np.array(ci))}


def _split_metrics(y: IntArray, p: FloatArray) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics_iter[split], metrics_stats[split]) for labels y (n,) and predictions p (n, B)."""
    curves, aupr, tpauc = _curves(y, p)
    curves["calibration_curve"], ece = _calibration(y, p)
    brier = (((y == 1)[:, None] - p) ** 2).mean(axis=0)
    values = {"AUROC": _auroc(y, p), "AUPR": aupr, "tpAUC": tpauc, "Brier": brier, "ECE": ece}
    values.update(_threshold_metrics(y, p))
    scalars = {
        k: {"n": int(np.isfinite(values[k]).sum()), **_stats(values[k])} for k in SCALAR_NAMES
    }
    arrays = {c: {v: _stats(a) for v, a in d.items()} for c, d in curves.items()}
    iteration = {"scalars": {k: values[k].tolist() for k in SCALAR_NAMES}, "arrays": curves}
    return {"metrics": iteration}, {"metrics": {"scalars": scalars, "arrays": arrays}}


def _by_label(values: FloatArray, labels: IntArray) -> dict[str, dict[int, float]]:
    groups = {lab: values[labels == lab] for lab in np.unique(labels).tolist()}
    return {
        "mean": {k: float(v.mean()) for k, v in groups.items()},
        "std": {k: float(v.std()) for k, v in groups.items()},
    }


def build_metrics_pickle(
    subject_codes: ArrayLike, y: ArrayLike, proba_boot: ArrayLike, rng: np.random.Generator
) -> dict[str, Any]:
    """The ``metrics_{run_name}.pickle`` dict for test labels y (n,) and predictions (n, B)."""
    codes, labels = np.asarray(subject_codes).astype(str), np.asarray(y).astype(np.int64)
    p = np.array(proba_boot, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != labels.shape[0] or codes.shape != labels.shape:
        raise ValueError(f"need codes/y (n,) and proba_boot (n, B); got {codes.shape}, {p.shape}")
    n, b = p.shape
    idx = rng.integers(0, n, 2 * n)  # pseudo train split: resampled, overfitted predictions
    p_train = sigmoid(1.5 * np.log(p[idx] / (1 - p[idx])) + rng.normal(0, 0.2, (2 * n, b)))
    (train_iter, train_stats), (test_iter, test_stats) = (
        _split_metrics(labels[idx], p_train),
        _split_metrics(labels, p),
    )
    preds = {
        "y_pred_proba": p,
        "y_pred": (p >= 0.5).astype(np.int64),
        "label": np.repeat(labels[:, None], b, axis=1),
    }
    test_iter["preds"] = {"arrays": {"predictions": preds}}
    sd = p.std(axis=1)
    uq = {
        "mean_std": float(sd.mean()),
        "median_std": float(np.median(sd)),
        "max_std": float(sd.max()),
    }
    subjectwise = {
        "subject_code": codes,
        "labels": labels.copy(),
        "uq": {"scalars": uq},
        "preds": {k: {"mean": v.mean(axis=1), "std": v.std(axis=1)} for k, v in preds.items()},
    }
    global_stats = {
        "y_pred_proba": _by_label(p.mean(axis=1), labels),
        "uncertainty": _by_label(sd, labels),
    }
    return {
        "metrics_iter": {"train": train_iter, "test": test_iter},
        "metrics_stats": {"train": train_stats, "test": test_stats},
        "subjectwise_stats": {"test": subjectwise},
        "subject_global_stats": {"test": global_stats},
    }


def build_dict_arrays(
    test: tuple[ArrayLike, ArrayLike], train: tuple[ArrayLike, ArrayLike], rng: np.random.Generator
) -> dict[str, Any]:
    """The ``dictArrays_{run_name}.pickle`` dict (features shift with the label)."""
    effect = rng.normal(0.0, 0.8, len(FEATURE_NAMES))
    out: dict[str, Any] = {"feature_names": list(FEATURE_NAMES), "X_idxs": {}}
    start = 0
    for split, (codes, labels) in (("train", train), ("test", test)):
        lab = np.asarray(labels).astype(np.int64)
        shape = (lab.size, len(FEATURE_NAMES))
        out[f"x_{split}"] = rng.normal(0.0, 1.0, shape) + lab[:, None] * effect
        out[f"x_{split}_w"] = rng.uniform(0.6, 1.0, shape)
        out[f"y_{split}"], out[f"subject_codes_{split}"] = lab, np.asarray(codes).astype(str)
        out["X_idxs"][split] = np.arange(start, start + lab.size)
        start += lab.size
    return out


def _pupil_signal(rng: np.random.Generator, labels: IntArray, length: int) -> FloatArray:
    """Baseline-normalised pupil light responses to a blue then a red stimulus."""
    u, n = np.linspace(0.0, 1.0, length), labels.size
    out = np.zeros((n, length))
    for onset, amp in ((0.15, 0.45), (0.55, 0.35)):
        s = np.clip(u - onset, 0.0, None)[None, :] / rng.uniform(0.04, 0.08, (n, 1))
        out -= amp * (1 - 0.3 * labels[:, None]) * rng.uniform(0.8, 1.2, (n, 1)) * s * np.exp(1 - s)
    return out + rng.normal(0.0, 0.01, out.shape)


def build_imputation_pickle(
    codes: NDArray[np.str_], labels: IntArray, rng: np.random.Generator, signal_length: int
) -> dict[str, Any]:
    """The ``imputation_{model}.pickle`` dict: ~70/30 train/test split of the given subjects."""
    n_train, t = round(0.7 * codes.size), np.arange(signal_length) / 30.0
    df: dict[str, Any] = {}
    imputation: dict[str, Any] = {}
    for split, idx in (("train", np.arange(n_train)), ("test", np.arange(n_train, codes.size))):
        truth = _pupil_signal(rng, labels[idx], signal_length)
        raw = truth + rng.normal(0.0, 0.02, truth.shape)
        raw[rng.random(truth.shape) < 0.05] = np.nan  # outliers removed before imputation
        df[split] = {
            "metadata": {
                "subject_code": np.repeat(codes[idx][:, None], signal_length, axis=1).astype(object)
            },
            "time": {"time": np.tile(t, (idx.size, 1))},
            "data": {"pupil_raw": raw},
        }
        mean = (truth + rng.normal(0.0, 0.005, truth.shape))[:, :, None]
        imputation[split] = {"imputation_dict": {"imputation": {"mean": mean}}}
    return {"source_data": {"df": df}, "model_artifacts": {"imputation": imputation}}
