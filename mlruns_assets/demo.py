"""Write a realistic demo MLflow tracking store of a clinical prediction study.

Everything goes through MLflow's public client API, so the store looks like a real one (see
``/work/shared/reference/seed-format.md``). Choices where the seed format is vague:

- One fixed subject pool (``PLR`` + 4 digits, < 9000), a fixed label and latent risk per subject.
  Its first ``n_test`` subjects are the test set of every classification run (~45% cases); the
  rest are the train set (~145/63 times ``n_test``). Imputation subjects are drawn from the pool.
- Bootstrap predictions: ``sigmoid(q * latent + bias + run_noise_i + N(0, sigma_i))`` per
  subject/iteration, clipped to [1e-4, 1 - 1e-4]; ``sigma_i`` differs per subject.
- ``preds.arrays.predictions.label`` is the true label repeated over the bootstrap axis.
- The train split has no predictions in the demo: its metrics come from one resample of the test
  subjects with sharpened (overfitted) probabilities; only the test split carries ``preds``.
- Threshold metrics use p >= 0.5. ``PPV_prev``/``NPV_prev`` are PPV/NPV re-weighted to a population
  prevalence of 3.54%. ``tpAUC`` is the two-way partial AUC (TPR >= 0.5, FPR <= 0.5) normalised
  to [0, 1]. ``ECE`` uses 10 equal-width bins. Undefined values (e.g. AUROC of a single-class set,
  empty calibration bins) are NaN.
- Curves are sampled on fixed grids: ROC on 200 FPR points, PR on 200 recall points,
  calibration on 10 equal-width bins: ``metrics_iter`` arrays are (200, B) / (10, B) and
  ``metrics_stats`` arrays give ``mean``/``std`` (200,) and ``ci`` (2, 200). ``ci`` is NaN where
  ``std == 0`` (scalars too). Scalar stats carry ``n`` = number of finite iterations.
- ``subjectwise_stats['test']['uq']['scalars']``: ``mean_std``, ``median_std``, ``max_std`` of
  the per-subject bootstrap std of ``y_pred_proba``. ``subject_global_stats[split][key][var]
  [label]``: for keys ``y_pred_proba`` and ``uncertainty``, ``mean``/``std`` over the subjects
  of each (int) label.
- ``dictArrays``: 8 pupillometry features; ``x_*_w`` are per-value weights in (0, 1] (share of
  non-imputed samples behind each feature); ``X_idxs`` = {split: row indices into the pool}.
- No ``model/model_{run_name}.pickle`` is written (it is never extracted).
- Metric histories: ``METRIC_STEPS`` steps per metric converging to the final bootstrap summary.
- Imputation pickles also carry ``source_data.df[split].data.pupil_raw`` (n, T) with NaN gaps
  where outliers were removed; the signal is a baseline-normalised pupil light response.
"""

from __future__ import annotations

import csv
import os
import pickle
import shlex
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, Literal, NamedTuple

import mlflow
import numpy as np
from mlflow.entities import Metric, Param
from numpy.typing import ArrayLike, NDArray

Backend = Literal["sqlite", "file"]
RunStatus = Literal["FINISHED", "FAILED", "KILLED", "RUNNING"]
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Writer = Callable[[Path, Any], None]

CLASSIFIERS = ("CATBOOST", "XGBOOST", "LogisticRegression", "TabPFN", "TabM")
FEATURIZATIONS = ("simple1.0",)
IMPUTATIONS = ("SAITS", "CSDI", "MOMENT-zeroshot", "linear", "pupil-gt")
OUTLIERS = ("pupil-gt", "OneClassSVM", "LOF", "MOMENT-gt-finetune")
SCALAR_NAMES = tuple(
    [
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
    ]
)
FEATURE_NAMES = tuple(f"{c}_{f}" for c in ("Blue", "Red") for f in ("MaxConstr", "PIPR", "Lat"))
SPLITS = ("train", "test")
N_GRID, N_BINS, METRIC_STEPS = 200, 10, 4
POPULATION_PREVALENCE = 0.0354
UNICODE_RUN_NAME = "CATBOOST_eval-auc__simple1.0__SAITS__pupil-gt_ünïcødé_✓"
SYNTHETIC_PREFIX = "__SYNTHETIC_"
# Variants added by bad_runs=True, in order: broken runs (bad_run_ids, label = variant), odd but
# valid runs (good_run_ids) and runs that must never become a partition (excluded_run_ids).
BAD_VARIANTS = ("truncated", "malicious", "nan_proba", "label_2", "unmapped_codes", "no_artifacts")
VALID_VARIANTS = ("single_class", "unicode")
EXCLUDED_VARIANTS = dict(
    deleted="deleted",
    failed="failed",
    running="running",
    synthetic_prefix="synthetic",
    synthetic_tag="synthetic",
)
ALL_VARIANTS = (*BAD_VARIANTS, *VALID_VARIANTS, *EXCLUDED_VARIANTS)
VARIANT_STATUS: dict[str, RunStatus] = {"failed": "FAILED", "running": "RUNNING"}


@dataclass(frozen=True, kw_only=True)
class DemoStore:
    tracking_uri: str
    classification_experiment: str = "Classification"
    imputation_experiment: str = "Imputation"
    good_run_ids: list[str] = field(default_factory=list)
    bad_run_ids: dict[str, str] = field(default_factory=dict)
    excluded_run_ids: dict[str, str] = field(default_factory=dict)
    subject_map_path: Path
    single_class_run_id: str | None = None
    imputation_run_ids: list[str] = field(default_factory=list)
    synthetic_experiment: str | None = None
    pwned_marker: Path | None = None  # must never exist: created only if the exploit is unpickled


class _Spec(NamedTuple):
    classifier: str
    featurization: str
    imputation: str
    outlier: str

    @property
    def name(self) -> str:
        return (
            f"{self.classifier}_eval-auc__{self.featurization}__{self.imputation}__{self.outlier}"
        )

    @property
    def params(self) -> dict[str, str]:
        return {
            "anomaly_source": self.outlier,
            "imputation_source": self.imputation,
            "model_name": self.classifier,
            "feature_param": self.featurization,
        }


@dataclass(frozen=True)
class _Pool:
    codes: NDArray[np.str_]
    labels: IntArray
    latent: FloatArray
    n_test: int


class _Exploit:
    """Unpickling this runs ``os.system(command)``. Written as a fixture; never unpickle it."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


# --------------------------------------------------------------------------- metrics (numpy)
def _sigmoid(x: FloatArray) -> FloatArray:
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
    return ((y[1:] + y[:-1]) / 2 * np.diff(x)[:, None]).sum(axis=0)


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
    p_train = _sigmoid(1.5 * np.log(p[idx] / (1 - p[idx])) + rng.normal(0, 0.2, (2 * n, b)))
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


# --------------------------------------------------------------------------- MLflow logging
def tracking_uri_for(path: Path, backend: Backend) -> str:
    if backend == "sqlite":
        return f"sqlite:///{Path(path).resolve()}/mlflow.db"
    if backend == "file":
        return str(Path(path).resolve() / "mlruns")
    raise ValueError(f"unknown backend {backend!r}")


def _dump(path: Path, obj: Any) -> None:
    with path.open("wb") as fh:
        pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)


def _truncating_dump(path: Path, obj: Any) -> None:
    _dump(path, obj)
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


def _history(stats: Mapping[str, Any]) -> list[Metric]:
    """METRIC_STEPS values per ``{split}/{name}``, converging to the bootstrap summary."""
    out, now = [], int(time.time() * 1000)
    for split in SPLITS:
        scalars = stats[split]["metrics"]["scalars"]
        lo, hi = scalars["AUROC"]["ci"]
        finals = {k: scalars[k]["mean"] for k in ("AUROC", "AUPR", "Brier", "ECE")}
        for name, final in {**finals, "AUROC_CI_lo": lo, "AUROC_CI_hi": hi}.items():
            sign = -1.0 if name in ("Brier", "ECE") else 1.0  # earlier steps are worse
            for k in range(METRIC_STEPS):
                value = float(final) - sign * 0.03 * (METRIC_STEPS - 1 - k)
                out.append(
                    Metric(f"{split}/{name}", value, now + 1000 * k, k)
                )  # bounded: a few steps of a few metrics of one run
    return out


def _log_run(
    client: mlflow.MlflowClient,
    experiment_id: str,
    run_name: str,
    artifacts: Mapping[str, tuple[str, Any]],
    history: list[Metric],
    params: Mapping[str, str],
    *,
    status: RunStatus = "FINISHED",
    tags: Mapping[str, str] | None = None,
    writer: Writer = _dump,
) -> str:
    """Create a run, log params/metrics and pickles ``{artifact_dir: (file_name, obj)}``.

    ``writer`` writes the ``metrics`` pickle (to corrupt it); ``RUNNING`` runs stay open."""
    run = client.create_run(experiment_id, run_name=run_name, tags=dict(tags or {}))
    run_id: str = run.info.run_id
    run_params = [Param(k, v) for k, v in params.items()]  # bounded: the params of one run
    client.log_batch(run_id, metrics=history, params=run_params)
    with tempfile.TemporaryDirectory() as tmp:
        for artifact_dir, (file_name, obj) in artifacts.items():
            local = Path(tmp) / artifact_dir / file_name
            local.parent.mkdir()
            (writer if artifact_dir == "metrics" else _dump)(local, obj)
            client.log_artifact(run_id, str(local), artifact_dir)
    if status != "RUNNING":
        client.set_terminated(run_id, status)
    return run_id


def _classification_artifacts(run_name: str, metrics: Any, arrays: Any) -> dict[str, Any]:
    return {
        "metrics": (f"metrics_{run_name}.pickle", metrics),
        "dict_arrays": (f"dictArrays_{run_name}.pickle", arrays),
    }


def log_classification_run(
    client: mlflow.MlflowClient,
    experiment_id: str,
    run_name: str,
    subject_codes: ArrayLike,
    y: ArrayLike,
    proba_boot: ArrayLike,
    *,
    status: RunStatus = "FINISHED",
    tags: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    rng: np.random.Generator | None = None,
    train: tuple[ArrayLike, ArrayLike] | None = None,
) -> str:
    """Build a consistent metrics/dictArrays pair from y (n,) and proba_boot (n, B) and log it.

    ``train`` = (codes, labels) of the train subjects (empty when omitted); params default to
    the parts of a ``{CLASSIFIER}_eval-x__{feat}__{imputation}__{outlier}`` run name."""
    rng = rng if rng is not None else np.random.default_rng(0)
    metrics = build_metrics_pickle(subject_codes, y, proba_boot, rng)
    no_train = (np.array([], dtype=str), np.array([], dtype=np.int64))
    arrays = build_dict_arrays((subject_codes, y), train if train is not None else no_train, rng)
    if params is None:
        keys = ("model_name", "feature_param", "imputation_source", "anomaly_source")
        parts = run_name.split("__")
        params = dict(zip(keys, [parts[0].split("_")[0], *parts[1:]], strict=False))
    artifacts = _classification_artifacts(run_name, metrics, arrays)
    history = _history(metrics["metrics_stats"])
    return _log_run(
        client, experiment_id, run_name, artifacts, history, params, status=status, tags=tags
    )


# --------------------------------------------------------------------------- demo store
@dataclass(frozen=True)
class _Writer:
    client: mlflow.MlflowClient
    path: Path
    backend: Backend
    pool: _Pool
    rng: np.random.Generator
    bootstraps: int

    def experiment(self, name: str) -> str:
        location = (self.path / "artifacts" / name).as_uri() if self.backend == "sqlite" else None
        return str(self.client.create_experiment(name, artifact_location=location))

    def run(self, experiment_id: str, spec: _Spec, variant: str = "") -> str:
        """One simulated classification run; ``variant`` is one of ALL_VARIANTS or ""."""
        pool, rng, n = self.pool, self.rng, self.pool.n_test
        codes, y, latent = pool.codes[:n], pool.labels[:n], pool.latent[:n]
        if variant == "single_class":
            codes, y, latent = codes[y == 0], y[y == 0], latent[y == 0]
        elif variant == "unmapped_codes":
            codes = np.array([f"PLR{9000 + i}" for i in range(n)])
        metrics = build_metrics_pickle(codes, y, _simulate_proba(rng, latent, self.bootstraps), rng)
        subjectwise = metrics["subjectwise_stats"]["test"]
        predictions = metrics["metrics_iter"]["test"]["preds"]["arrays"]["predictions"]
        if variant == "nan_proba":
            subjectwise["preds"]["y_pred_proba"]["mean"][0] = np.nan
            predictions["y_pred_proba"][0] = np.nan
        elif variant == "label_2":
            subjectwise["labels"][0] = predictions["label"][0] = 2
        name = {"unicode": UNICODE_RUN_NAME, "synthetic_prefix": SYNTHETIC_PREFIX + spec.name}
        run_name = name.get(variant, spec.name)
        arrays = build_dict_arrays((codes, y), (pool.codes[n:], pool.labels[n:]), rng)
        artifacts = _classification_artifacts(run_name, metrics, arrays)
        run_id = _log_run(
            self.client,
            experiment_id,
            run_name,
            {} if variant == "no_artifacts" else artifacts,
            _history(metrics["metrics_stats"]),
            spec.params,
            writer=self._metrics_writer(variant),
            status=VARIANT_STATUS.get(variant, "FINISHED"),
            tags={"is_synthetic": "true"} if variant == "synthetic_tag" else None,
        )
        if variant == "deleted":
            self.client.delete_run(run_id)
        return run_id

    def _metrics_writer(self, variant: str) -> Writer:
        if variant == "truncated":
            return _truncating_dump
        if variant != "malicious":
            return _dump
        exploit = _Exploit(f"touch {shlex.quote(str(self.path / 'PWNED'))}")
        return lambda target, obj: _dump(target, {**obj, "payload": exploit})

    def imputation_run(
        self, experiment_id: str, imputation: str, outlier: str, n: int, length: int
    ) -> str:
        chosen = self.rng.choice(self.pool.codes.size, size=n, replace=False)
        codes, labels = self.pool.codes[chosen], self.pool.labels[chosen]
        data = build_imputation_pickle(codes, labels, self.rng, length)
        artifacts = {"imputation": (f"imputation_{imputation}.pickle", data)}
        now = int(time.time() * 1000)
        mae = [
            Metric(f"{s}/MAE", 0.02 / (k + 1), now + k, k)
            for s in SPLITS
            for k in range(METRIC_STEPS)
        ]
        params = {"imputation_source": imputation, "anomaly_source": outlier}
        return _log_run(
            self.client, experiment_id, f"{imputation}__{outlier}", artifacts, mae, params
        )


def _make_pool(rng: np.random.Generator, n_test: int, imputation_subjects: int) -> _Pool:
    n_train = max(round(n_test * 145 / 63), imputation_subjects - n_test, 0)
    numbers = rng.choice(np.arange(1, 9000), size=n_test + n_train, replace=False)
    blocks = [(rng.permutation(m) < round(0.45 * m)).astype(np.int64) for m in (n_test, n_train)]
    labels = np.concatenate(blocks)
    latent = np.where(labels == 1, 0.9, -0.9) + rng.normal(0.0, 1.0, labels.size)
    return _Pool(np.array([f"PLR{k:04d}" for k in numbers]), labels, latent, n_test)


def _simulate_proba(rng: np.random.Generator, latent: FloatArray, bootstraps: int) -> FloatArray:
    """Per-subject latent risk + run-level noise + heteroscedastic bootstrap noise."""
    n = latent.size
    sigma = rng.uniform(0.2, 0.6) * rng.uniform(0.5, 1.5, n)
    logits = rng.uniform(0.7, 1.3) * latent + rng.normal(0.0, 0.3) + rng.normal(0.0, 0.5, n)
    noisy = logits[:, None] + rng.normal(0.0, 1.0, (n, bootstraps)) * sigma[:, None]
    return np.clip(_sigmoid(noisy), 1e-4, 1 - 1e-4)


def _specs(rng: np.random.Generator, count: int) -> list[_Spec]:
    """Distinct registry combinations; the first one is a CatBoost run spelled "CatBoost"."""
    combos = [_Spec(*c) for c in product(CLASSIFIERS, FEATURIZATIONS, IMPUTATIONS, OUTLIERS)]
    if count > len(combos):
        raise ValueError(f"at most {len(combos)} classification runs (incl. bad runs) supported")
    combos = [combos[i] for i in rng.permutation(len(combos))]
    first = next(i for i, c in enumerate(combos) if c.classifier == "CATBOOST")
    combos.insert(0, combos.pop(first)._replace(classifier="CatBoost"))
    return combos[:count]


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


def _write_subject_map(target: Path, pool: _Pool) -> Path:
    rows = []
    for label, prefix in ((0, "H"), (1, "G")):
        codes = sorted(pool.codes[pool.labels == label].tolist())
        rows += [(code, f"{prefix}{i:03d}") for i, code in enumerate(codes, start=1)]
    with target.open("w", newline="") as fh:
        csv.writer(fh).writerows([("original", "anonymized"), *sorted(rows)])
    return target


def write_demo_store(
    path: Path,
    *,
    backend: Backend = "sqlite",
    runs: int = 12,
    bootstraps: int = 50,
    n_test: int = 63,
    imputation_runs: int = 2,
    imputation_subjects: int = 40,
    signal_length: int = 200,
    seed: int = 0,
    bad_runs: bool = False,
) -> DemoStore:
    """Write Classification and Imputation experiments (and the bad/excluded runs) to ``path``.

    ``path`` should be a new or empty directory (experiment names must not exist yet). The
    subject map CSV goes to ``path/subject_map.csv``, outside the tracking store (sqlite:
    ``path/mlflow.db`` + ``path/artifacts/{experiment}``; file: ``path/mlruns``)."""
    path = Path(path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    if backend == "file":
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow >= 3.14 refuses file stores
    uri = tracking_uri_for(path, backend)
    rng = np.random.default_rng(seed)
    pool = _make_pool(rng, n_test, imputation_subjects)
    w = _Writer(mlflow.MlflowClient(uri), path, backend, pool, rng, bootstraps)
    specs = _specs(rng, runs + (len(ALL_VARIANTS) if bad_runs else 0))
    exp_id = w.experiment("Classification")
    good = [w.run(exp_id, spec) for spec in specs[:runs]]
    bad: dict[str, str] = {}
    excluded: dict[str, str] = {}
    variant_ids = {v: w.run(exp_id, s, v) for s, v in zip(specs[runs:], ALL_VARIANTS, strict=False)}
    if bad_runs:
        bad = {variant_ids[v]: v for v in BAD_VARIANTS}
        good += [variant_ids[v] for v in VALID_VARIANTS]
        excluded = {variant_ids[v]: label for v, label in EXCLUDED_VARIANTS.items()}
        excluded[w.run(w.experiment("synth_Classification"), specs[0])] = "synthetic"
    imp_id = w.experiment("Imputation")
    combos = list(product(IMPUTATIONS, OUTLIERS))
    if imputation_runs > len(combos):
        raise ValueError(f"at most {len(combos)} imputation runs supported")
    imputation_ids = [
        w.imputation_run(imp_id, imputation, outlier, imputation_subjects, signal_length)
        for imputation, outlier in combos[:imputation_runs]
    ]
    return DemoStore(
        tracking_uri=uri,
        good_run_ids=good,
        bad_run_ids=bad,
        excluded_run_ids=excluded,
        subject_map_path=_write_subject_map(path / "subject_map.csv", pool),
        single_class_run_id=variant_ids.get("single_class"),
        imputation_run_ids=imputation_ids,
        synthetic_experiment="synth_Classification" if bad_runs else None,
        pwned_marker=path / "PWNED",
    )
