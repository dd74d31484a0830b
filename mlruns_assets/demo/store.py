"""Write a realistic demo MLflow tracking store of a clinical prediction study.

Everything goes through MLflow's public client API, so the store looks like a real one. Layout
(``path`` is the directory given to ``write_demo_store``):

- Tracking store: sqlite ``path/mlflow.db`` with artifacts under ``path/artifacts/{experiment}``,
  or a legacy file store ``path/mlruns``. Experiments ``Classification`` and ``Imputation``.
- Classification runs are named
  ``{CLASSIFIER}_eval-auc__{featurization}__{imputation}__{outlier}`` from the method registries
  below (split on ``__``; the classifier is the first ``_``-token). The first run is a CatBoost
  run spelled ``CatBoost``, not ``CATBOOST``: the study mixed both. Params ``anomaly_source``,
  ``imputation_source``, ``model_name``, ``feature_param``; metrics ``{split}/{AUROC,
  AUROC_CI_lo, AUROC_CI_hi, AUPR, Brier, ECE}`` with ``METRIC_STEPS`` steps converging to the
  final bootstrap summary; artifacts ``metrics/metrics_{run_name}.pickle`` and
  ``dict_arrays/dictArrays_{run_name}.pickle``. No ``model/model_{run_name}.pickle`` is written
  (it is never extracted).
- Imputation runs are named ``{imputation}__{outlier}``: params ``imputation_source`` and
  ``anomaly_source``, metrics ``{split}/MAE``, artifact
  ``imputation/imputation_{imputation}.pickle``.
- What the pickles hold: see ``mlruns_assets.demo.pickles``.
- ``path/subject_map.csv``, outside the tracking store and readable by its owner only (0600):
  header ``original,anonymized``; ``H001...`` for controls and ``G001...`` for cases, assigned in
  sorted order of the original codes per class.

Choices:

- One fixed subject pool (``PLR`` + 4 digits, < 9000), a fixed label and latent risk per subject.
  Its first ``n_test`` subjects are the test set of every classification run (~45% cases); the
  rest are the train set (~145/63 times ``n_test``). Imputation subjects are drawn from the pool.
- Bootstrap predictions: ``sigmoid(q * latent + bias + run_noise_i + N(0, sigma_i))`` per
  subject/iteration, clipped to [1e-4, 1 - 1e-4]; ``sigma_i`` differs per subject.
- Every draw comes from one generator seeded with ``seed``: the same ``DemoWriter`` calls in the
  same order write the same data.
"""

from __future__ import annotations

import csv
import os
import pickle
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, Literal, NamedTuple

import mlflow
import numpy as np
from mlflow.entities import Metric, Param
from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE
from numpy.typing import ArrayLike, NDArray

from mlruns_assets.demo.pickles import SCALAR_NAMES as SCALAR_NAMES
from mlruns_assets.demo.pickles import FloatArray, IntArray, sigmoid
from mlruns_assets.demo.pickles import build_dict_arrays as build_dict_arrays
from mlruns_assets.demo.pickles import build_imputation_pickle as build_imputation_pickle
from mlruns_assets.demo.pickles import build_metrics_pickle as build_metrics_pickle

Backend = Literal["sqlite", "file"]
RunStatus = Literal["FINISHED", "FAILED", "KILLED", "RUNNING"]
Writer = Callable[[Path, Any], None]
Artifacts = Mapping[str, tuple[str, Any]]

CLASSIFIERS = ("CATBOOST", "XGBOOST", "LogisticRegression", "TabPFN", "TabM")
FEATURIZATIONS = ("simple1.0",)
IMPUTATIONS = ("SAITS", "CSDI", "MOMENT-zeroshot", "linear", "pupil-gt")
OUTLIERS = ("pupil-gt", "OneClassSVM", "LOF", "MOMENT-gt-finetune")
SPLITS = ("train", "test")
METRIC_STEPS = 4
CLASSIFICATION, IMPUTATION = "Classification", "Imputation"


@dataclass(frozen=True, kw_only=True)
class DemoStore:
    tracking_uri: str
    subject_map_path: Path
    classification_experiment: str = CLASSIFICATION
    imputation_experiment: str = IMPUTATION
    good_run_ids: list[str] = field(default_factory=list)
    imputation_run_ids: list[str] = field(default_factory=list)


class RunSpec(NamedTuple):
    """One combination of the method registries: a classification run's name and params."""

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


class Subjects(NamedTuple):
    """Subject codes, labels (0/1) and latent risks, all (n,)."""

    codes: NDArray[np.str_]
    labels: IntArray
    latent: FloatArray


@dataclass(frozen=True)
class SubjectPool:
    """The demo's subjects: the first ``n_test`` are the test set of every classification run."""

    codes: NDArray[np.str_]
    labels: IntArray
    latent: FloatArray
    n_test: int

    @classmethod
    def draw(cls, rng: np.random.Generator, n_test: int, imputation_subjects: int) -> SubjectPool:
        n_train = max(round(n_test * 145 / 63), imputation_subjects - n_test, 0)
        numbers = rng.choice(np.arange(1, 9000), size=n_test + n_train, replace=False)
        blocks = [
            (rng.permutation(m) < round(0.45 * m)).astype(np.int64) for m in (n_test, n_train)
        ]
        labels = np.concatenate(blocks)
        latent = np.where(labels == 1, 0.9, -0.9) + rng.normal(0.0, 1.0, labels.size)
        return cls(np.array([f"PLR{k:04d}" for k in numbers]), labels, latent, n_test)

    @property
    def test(self) -> Subjects:
        n = self.n_test
        return Subjects(self.codes[:n], self.labels[:n], self.latent[:n])

    @property
    def train(self) -> Subjects:
        n = self.n_test
        return Subjects(self.codes[n:], self.labels[n:], self.latent[n:])


class SimulatedRun(NamedTuple):
    """The two pickles of one simulated classification run, not yet logged."""

    metrics: dict[str, Any]
    dict_arrays: dict[str, Any]


# --------------------------------------------------------------------------- MLflow logging
def tracking_uri_for(path: Path, backend: Backend) -> str:
    if backend == "sqlite":
        return f"sqlite:///{Path(path).resolve()}/mlflow.db"
    if backend == "file":
        return str(Path(path).resolve() / "mlruns")
    raise ValueError(f"unknown backend {backend!r}")


def dump_pickle(path: Path, obj: Any) -> None:
    with path.open("wb") as fh:
        pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)


def metric_history(stats: Mapping[str, Any]) -> list[Metric]:
    """METRIC_STEPS values per ``{split}/{name}``, converging to the bootstrap summary.

    ``stats`` is the ``metrics_stats`` of a metrics pickle."""
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


def log_run(
    client: mlflow.MlflowClient,
    experiment_id: str,
    run_name: str,
    artifacts: Artifacts,
    history: list[Metric],
    params: Mapping[str, str],
    *,
    status: RunStatus = "FINISHED",
    tags: Mapping[str, str] | None = None,
    writer: Writer = dump_pickle,
) -> str:
    """Create a run, log params/metrics and the artifacts ``{artifact_dir: (file_name, obj)}``.

    ``writer(local_file, obj)`` writes each artifact file (a pickle by default) before it is
    logged; a ``RUNNING`` run is left open."""
    run = client.create_run(experiment_id, run_name=run_name, tags=dict(tags or {}))
    run_id: str = run.info.run_id
    run_params = [Param(k, v) for k, v in params.items()]  # bounded: the params of one run
    client.log_batch(run_id, metrics=history, params=run_params)
    with tempfile.TemporaryDirectory() as tmp:
        for artifact_dir, (file_name, obj) in artifacts.items():
            local = Path(tmp) / artifact_dir / file_name
            local.parent.mkdir()
            writer(local, obj)
            client.log_artifact(run_id, str(local), artifact_dir)
    if status != "RUNNING":
        client.set_terminated(run_id, status)
    return run_id


def classification_artifacts(
    run_name: str, metrics: Any, dict_arrays: Any
) -> dict[str, tuple[str, Any]]:
    """The artifacts of a classification run, as ``log_run`` takes them."""
    return {
        "metrics": (f"metrics_{run_name}.pickle", metrics),
        "dict_arrays": (f"dictArrays_{run_name}.pickle", dict_arrays),
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
    artifacts = classification_artifacts(run_name, metrics, arrays)
    history = metric_history(metrics["metrics_stats"])
    return log_run(
        client, experiment_id, run_name, artifacts, history, params, status=status, tags=tags
    )


# --------------------------------------------------------------------------- demo store
def _simulate_proba(rng: np.random.Generator, latent: FloatArray, bootstraps: int) -> FloatArray:
    """Per-subject latent risk + run-level noise + heteroscedastic bootstrap noise."""
    n = latent.size
    sigma = rng.uniform(0.2, 0.6) * rng.uniform(0.5, 1.5, n)
    logits = rng.uniform(0.7, 1.3) * latent + rng.normal(0.0, 0.3) + rng.normal(0.0, 0.5, n)
    noisy = logits[:, None] + rng.normal(0.0, 1.0, (n, bootstraps)) * sigma[:, None]
    return np.clip(sigmoid(noisy), 1e-4, 1 - 1e-4)


@dataclass(frozen=True)
class DemoWriter:
    """Writes the runs of one demo store; ``write_demo_store`` calls it in a fixed order."""

    client: mlflow.MlflowClient
    path: Path
    backend: Backend
    tracking_uri: str
    pool: SubjectPool
    rng: np.random.Generator
    bootstraps: int

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        backend: Backend = "sqlite",
        bootstraps: int = 50,
        n_test: int = 63,
        imputation_subjects: int = 40,
        seed: int = 0,
    ) -> DemoWriter:
        """A writer for a new tracking store in ``path`` (created if missing); draws the pool."""
        path = Path(path).resolve()
        path.mkdir(parents=True, exist_ok=True)
        if backend == "file":
            # MLflow >= 3.14 refuses file stores unless its own switch is on.
            MLFLOW_ALLOW_FILE_STORE.set("true")  # type: ignore[no-untyped-call]
        uri = tracking_uri_for(path, backend)
        rng = np.random.default_rng(seed)
        pool = SubjectPool.draw(rng, n_test, imputation_subjects)
        return cls(mlflow.MlflowClient(uri), path, backend, uri, pool, rng, bootstraps)

    def experiment(self, name: str) -> str:
        location = (self.path / "artifacts" / name).as_uri() if self.backend == "sqlite" else None
        return str(self.client.create_experiment(name, artifact_location=location))

    def run_specs(self, count: int) -> list[RunSpec]:
        """The first ``count`` of the registry combinations in a random order, the first one a
        CatBoost run spelled "CatBoost"; later calls draw a new order."""
        combos = [RunSpec(*c) for c in product(CLASSIFIERS, FEATURIZATIONS, IMPUTATIONS, OUTLIERS)]
        if count > len(combos):
            raise ValueError(f"at most {len(combos)} classification runs supported")
        combos = [combos[i] for i in self.rng.permutation(len(combos))]
        first = next(i for i, c in enumerate(combos) if c.classifier == "CATBOOST")
        combos.insert(0, combos.pop(first)._replace(classifier="CatBoost"))
        return combos[:count]

    def simulate(self, subjects: Subjects | None = None) -> SimulatedRun:
        """The pickles of one classification run over ``subjects`` (default: the test set)."""
        codes, y, latent = subjects if subjects is not None else self.pool.test
        proba = _simulate_proba(self.rng, latent, self.bootstraps)
        metrics = build_metrics_pickle(codes, y, proba, self.rng)
        train = self.pool.train
        arrays = build_dict_arrays((codes, y), (train.codes, train.labels), self.rng)
        return SimulatedRun(metrics, arrays)

    def classification_run(self, experiment_id: str, spec: RunSpec) -> str:
        """Simulate and log one finished classification run; returns its run id."""
        run = self.simulate()
        artifacts = classification_artifacts(spec.name, run.metrics, run.dict_arrays)
        history = metric_history(run.metrics["metrics_stats"])
        return log_run(self.client, experiment_id, spec.name, artifacts, history, spec.params)

    def imputation_runs(self, count: int, subjects: int, signal_length: int) -> list[str]:
        """Create the Imputation experiment with ``count`` runs of ``subjects`` subjects each."""
        combos = list(product(IMPUTATIONS, OUTLIERS))
        if count > len(combos):
            raise ValueError(f"at most {len(combos)} imputation runs supported")
        experiment_id = self.experiment(IMPUTATION)
        return [
            self._imputation_run(experiment_id, imputation, outlier, subjects, signal_length)
            for imputation, outlier in combos[:count]
        ]

    def _imputation_run(
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
        return log_run(
            self.client, experiment_id, f"{imputation}__{outlier}", artifacts, mae, params
        )

    def write_subject_map(self) -> Path:
        """``path/subject_map.csv`` for the whole pool, created readable by its owner only."""
        target = self.path / "subject_map.csv"
        rows = []
        for label, prefix in ((0, "H"), (1, "G")):
            codes = sorted(self.pool.codes[self.pool.labels == label].tolist())
            rows += [(code, f"{prefix}{i:03d}") for i, code in enumerate(codes, start=1)]
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", newline="") as fh:
            os.chmod(target, 0o600)  # os.open's mode applies to a new file only
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
) -> DemoStore:
    """Write the Classification and Imputation experiments and the subject map to ``path``.

    ``path`` should be a new or empty directory (experiment names must not exist yet). The
    subject map CSV goes to ``path/subject_map.csv``, outside the tracking store (sqlite:
    ``path/mlflow.db`` + ``path/artifacts/{experiment}``; file: ``path/mlruns``)."""
    w = DemoWriter.create(
        path,
        backend=backend,
        bootstraps=bootstraps,
        n_test=n_test,
        imputation_subjects=imputation_subjects,
        seed=seed,
    )
    specs = w.run_specs(runs)
    experiment_id = w.experiment(CLASSIFICATION)
    good = [w.classification_run(experiment_id, spec) for spec in specs]
    imputation_ids = w.imputation_runs(imputation_runs, imputation_subjects, signal_length)
    return DemoStore(
        tracking_uri=w.tracking_uri,
        subject_map_path=w.write_subject_map(),
        good_run_ids=good,
        imputation_run_ids=imputation_ids,
    )
