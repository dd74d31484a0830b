"""Seed-shaped classification tracking stores for the benchmarks.

``write_benchmark_store`` logs N classification runs through ``mlruns_assets.demo.store``'s public
``log_classification_run`` (the same metrics/dictArrays pickles as the demo store: ~20 MB of
metrics pickle per run at B=1000). ``write_demo_store`` cannot be used directly: it draws run
names from the 100 registry combinations and refuses more runs. Here the names also vary the
eval metric (``_eval-auc``, ``_eval-logloss``, ...): 5 x 4 x 5 x 4 = 400 distinct, parseable names.
The subject pool, labels and bootstrap predictions follow the demo's recipe (see demo.py).

``write_subset_store`` makes the smaller stores of the N sweep: the first n runs of a store,
re-logged through MLflow (same names, params, tags and metric history) with their artifact files
hard-linked, so each run carries byte-identical pickles and only N changes.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities import Metric, Param, RunTag

from mlruns_assets.demo.store import (
    CLASSIFIERS,
    FEATURIZATIONS,
    IMPUTATIONS,
    OUTLIERS,
    log_classification_run,
    tracking_uri_for,
)

EXPERIMENT = "Classification"
EVAL_METRICS = ("auc", "logloss", "brier", "f1")
N_TEST, N_TRAIN = 63, 145


@dataclass(frozen=True)
class BenchStore:
    """A tracking store written for a benchmark."""

    root: Path
    tracking_uri: str
    experiment: str
    run_ids: list[str]
    subject_map: Path

    @property
    def artifact_root(self) -> Path:
        return self.root / "artifacts"


def run_names(count: int) -> list[str]:
    """``count`` parseable run names, distinct up to 400 (then they repeat, as MLflow allows)."""
    combos = list(product(CLASSIFIERS, EVAL_METRICS, FEATURIZATIONS, IMPUTATIONS, OUTLIERS))
    return [
        f"{c}_eval-{m}__{f}__{i}__{o}"
        for c, m, f, i, o in (combos[k % len(combos)] for k in range(count))
    ]


def _simulate_proba(rng: np.random.Generator, latent: np.ndarray, bootstraps: int) -> np.ndarray:
    """Per-subject latent risk + run-level noise + heteroscedastic bootstrap noise (demo's)."""
    n = latent.size
    sigma = rng.uniform(0.2, 0.6) * rng.uniform(0.5, 1.5, n)
    logits = rng.uniform(0.7, 1.3) * latent + rng.normal(0.0, 0.3) + rng.normal(0.0, 0.5, n)
    noisy = logits[:, None] + rng.normal(0.0, 1.0, (n, bootstraps)) * sigma[:, None]
    return np.clip(1.0 / (1.0 + np.exp(-noisy)), 1e-4, 1 - 1e-4)


def _experiment(client: mlflow.MlflowClient, root: Path) -> str:
    location = (root / "artifacts" / EXPERIMENT).as_uri()
    return str(client.create_experiment(EXPERIMENT, artifact_location=location))


def write_benchmark_store(root: Path, runs: int, bootstraps: int, seed: int = 0) -> BenchStore:
    """A SQLite-backed store with one ``Classification`` experiment of ``runs`` FINISHED runs."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri_for(root, "sqlite")
    client = mlflow.MlflowClient(uri)
    rng = np.random.default_rng(seed)
    numbers = rng.choice(np.arange(1, 9000), size=N_TEST + N_TRAIN, replace=False)
    codes = np.array([f"PLR{k:04d}" for k in numbers])
    labels = np.concatenate(
        [(rng.permutation(m) < round(0.45 * m)).astype(np.int64) for m in (N_TEST, N_TRAIN)]
    )
    latent = np.where(labels == 1, 0.9, -0.9) + rng.normal(0.0, 1.0, labels.size)
    experiment_id = _experiment(client, root)
    run_ids = [
        log_classification_run(
            client,
            experiment_id,
            name,
            codes[:N_TEST],
            labels[:N_TEST],
            _simulate_proba(rng, latent[:N_TEST], bootstraps),
            rng=rng,
            train=(codes[N_TEST:], labels[N_TEST:]),
        )
        for name in run_names(runs)
    ]
    subject_map = root / "subject_map.csv"
    with subject_map.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["original", "anonymized"])
        for label, prefix in ((0, "H"), (1, "G")):
            members = sorted(codes[labels == label].tolist())
            writer.writerows((c, f"{prefix}{i:03d}") for i, c in enumerate(members, start=1))
    return BenchStore(root, uri, EXPERIMENT, run_ids, subject_map)


def _link_tree(source: Path, target: Path) -> None:
    """Hard-link every file of ``source`` into ``target`` (copy across file systems)."""
    for folder, _, files in os.walk(source):
        dest = target / Path(folder).relative_to(source)
        dest.mkdir(parents=True, exist_ok=True)
        for name in files:
            try:
                os.link(Path(folder) / name, dest / name)
            except OSError:
                shutil.copy2(Path(folder) / name, dest / name)


def write_subset_store(source: BenchStore, count: int, root: Path) -> BenchStore:
    """A new store holding the first ``count`` runs of ``source`` (see the module docstring)."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    src = mlflow.MlflowClient(source.tracking_uri)
    uri = tracking_uri_for(root, "sqlite")
    client = mlflow.MlflowClient(uri)
    experiment_id = _experiment(client, root)
    run_ids = []
    for run_id in source.run_ids[:count]:
        run = src.get_run(run_id)
        new = client.create_run(experiment_id, run_name=run.info.run_name)
        history = [
            Metric(m.key, m.value, m.timestamp, m.step)
            for key in run.data.metrics
            for m in src.get_metric_history(run_id, key)
        ]
        user_tags = [RunTag(k, v) for k, v in run.data.tags.items() if not k.startswith("mlflow.")]
        params = [Param(k, v) for k, v in run.data.params.items()]
        client.log_batch(new.info.run_id, metrics=history, params=params, tags=user_tags)
        source_dir = Path(run.info.artifact_uri.removeprefix("file://"))
        _link_tree(source_dir, Path(new.info.artifact_uri.removeprefix("file://")))
        client.set_terminated(new.info.run_id, "FINISHED")
        run_ids.append(new.info.run_id)
    subject_map = root / "subject_map.csv"
    shutil.copyfile(source.subject_map, subject_map)
    return BenchStore(root, uri, EXPERIMENT, run_ids, subject_map)


MANIFEST = "bench_store.json"


def _manifest(store: BenchStore, **config: int) -> None:
    data = {
        "tracking_uri": store.tracking_uri,
        "experiment": store.experiment,
        "run_ids": store.run_ids,
        "subject_map": str(store.subject_map),
        **config,
    }
    (store.root / MANIFEST).write_text(json.dumps(data, indent=1))


def reuse_or_write_store(
    root: Path, runs: int, bootstraps: int, seed: int = 0
) -> tuple[BenchStore, bool]:
    """The store a previous ``--workdir`` run wrote with the same settings (its manifest says
    so), else a new one (``write_benchmark_store``); and whether it was reused."""
    root = root.resolve()
    config = {"runs": runs, "bootstraps": bootstraps, "seed": seed}
    manifest = root / MANIFEST
    if manifest.exists():
        data = json.loads(manifest.read_text())
        if all(data.get(k) == v for k, v in config.items()):
            store = BenchStore(
                root,
                data["tracking_uri"],
                data["experiment"],
                list(data["run_ids"]),
                Path(data["subject_map"]),
            )
            return store, True
    if root.exists():
        shutil.rmtree(root)
    store = write_benchmark_store(root, runs, bootstraps, seed)
    _manifest(store, **config)
    return store, False


def reuse_or_write_subset(source: BenchStore, count: int, root: Path) -> BenchStore:
    """``write_subset_store``, or the subset a previous ``--workdir`` run wrote (same runs)."""
    root = root.resolve()
    manifest = root / MANIFEST
    if manifest.exists():
        data = json.loads(manifest.read_text())
        if data.get("source_run_ids") == source.run_ids[:count]:
            return BenchStore(
                root,
                data["tracking_uri"],
                data["experiment"],
                list(data["run_ids"]),
                Path(data["subject_map"]),
            )
    if root.exists():
        shutil.rmtree(root)
    store = write_subset_store(source, count, root)
    data = {
        "tracking_uri": store.tracking_uri,
        "experiment": store.experiment,
        "run_ids": store.run_ids,
        "subject_map": str(store.subject_map),
        "source_run_ids": source.run_ids[:count],
    }
    (root / MANIFEST).write_text(json.dumps(data, indent=1))
    return store
