"""Demo stores with every kind of bad run, for the tests only.

``write_bad_demo_store`` writes what ``write_demo_store`` writes and, between the good
classification runs and the Imputation experiment, one run per variant of ``ALL_VARIANTS`` and a
``synth_Classification`` experiment, all logged through the demo writer's own MLflow helpers:

- ``BAD_VARIANTS``: broken runs whose partition must fail (``bad_run_ids``, label = variant);
- ``VALID_VARIANTS``: odd but valid runs (in ``good_run_ids``);
- ``EXCLUDED_VARIANTS`` and the synthetic experiment's run: runs that must never become a
  partition (``excluded_run_ids``, label = reason).

Each step draws from the writer's one seeded generator in the order ``write_demo_store`` uses, so
the good runs, the pool and the subject map are those of ``write_demo_store`` with the same
arguments. The ``malicious`` variant's metrics pickle runs ``touch PWNED`` in the store's folder
when plain ``pickle`` loads it: never load it, and never import this module from the product.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlruns_assets.demo.store import (
    CLASSIFICATION,
    Backend,
    DemoStore,
    DemoWriter,
    RunSpec,
    RunStatus,
    Subjects,
    classification_artifacts,
    dump_pickle,
    log_run,
    metric_history,
)

BAD_VARIANTS = ("truncated", "malicious", "nan_proba", "label_2", "unmapped_codes", "no_artifacts")
VALID_VARIANTS = ("single_class", "unicode")
EXCLUDED_VARIANTS = {
    "deleted": "deleted",
    "failed": "failed",
    "running": "running",
    "synthetic_prefix": "synthetic",
    "synthetic_tag": "synthetic",
}
ALL_VARIANTS = (*BAD_VARIANTS, *VALID_VARIANTS, *EXCLUDED_VARIANTS)
VARIANT_STATUS: dict[str, RunStatus] = {"failed": "FAILED", "running": "RUNNING"}
UNICODE_RUN_NAME = "CATBOOST_eval-auc__simple1.0__SAITS__pupil-gt_ünïcødé_✓"
SYNTHETIC_PREFIX = "__SYNTHETIC_"
SYNTHETIC_EXPERIMENT = "synth_Classification"


@dataclass(frozen=True, kw_only=True)
class BadDemoStore(DemoStore):
    """A demo store and the ids of its bad, odd and excluded runs."""

    bad_run_ids: dict[str, str]  # run id -> variant: the partition must fail
    excluded_run_ids: dict[str, str]  # run id -> reason: never a partition
    single_class_run_id: str
    synthetic_experiment: str = SYNTHETIC_EXPERIMENT
    pwned_marker: Path  # must never exist: created only if the exploit is unpickled


class _Exploit:
    """Unpickling this runs ``os.system(command)``. Written as a fixture; never unpickle it."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


def _truncating_dump(path: Path, obj: Any) -> None:
    """Pickle ``obj``; a metrics pickle then loses its second half."""
    dump_pickle(path, obj)
    if path.name.startswith("metrics_"):
        with path.open("r+b") as fh:
            fh.truncate(path.stat().st_size // 2)


def log_variant_run(writer: DemoWriter, experiment_id: str, spec: RunSpec, variant: str) -> str:
    """Simulate and log the classification run ``spec`` broken as ``variant`` says."""
    test = writer.pool.test
    if variant == "single_class":
        keep = test.labels == 0
        test = Subjects(test.codes[keep], test.labels[keep], test.latent[keep])
    elif variant == "unmapped_codes":
        test = test._replace(codes=np.array([f"PLR{9000 + i}" for i in range(test.codes.size)]))
    metrics, dict_arrays = writer.simulate(test)
    subjectwise = metrics["subjectwise_stats"]["test"]
    predictions = metrics["metrics_iter"]["test"]["preds"]["arrays"]["predictions"]
    if variant == "nan_proba":
        subjectwise["preds"]["y_pred_proba"]["mean"][0] = np.nan
        predictions["y_pred_proba"][0] = np.nan
    elif variant == "label_2":
        subjectwise["labels"][0] = predictions["label"][0] = 2
    history = metric_history(metrics["metrics_stats"])
    if variant == "malicious":
        touch = f"touch {shlex.quote(str(writer.path / 'PWNED'))}"
        metrics = {**metrics, "payload": _Exploit(touch)}
    names = {"unicode": UNICODE_RUN_NAME, "synthetic_prefix": SYNTHETIC_PREFIX + spec.name}
    run_name = names.get(variant, spec.name)
    artifacts = classification_artifacts(run_name, metrics, dict_arrays)
    run_id = log_run(
        writer.client,
        experiment_id,
        run_name,
        {} if variant == "no_artifacts" else artifacts,
        history,
        spec.params,
        status=VARIANT_STATUS.get(variant, "FINISHED"),
        tags={"is_synthetic": "true"} if variant == "synthetic_tag" else None,
        writer=_truncating_dump if variant == "truncated" else dump_pickle,
    )
    if variant == "deleted":
        writer.client.delete_run(run_id)
    return run_id


def write_bad_demo_store(
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
) -> BadDemoStore:
    """``write_demo_store(path, ...)`` plus one run per variant and the synthetic experiment."""
    w = DemoWriter.create(
        path,
        backend=backend,
        bootstraps=bootstraps,
        n_test=n_test,
        imputation_subjects=imputation_subjects,
        seed=seed,
    )
    specs = w.run_specs(runs + len(ALL_VARIANTS))
    experiment_id = w.experiment(CLASSIFICATION)
    good = [w.classification_run(experiment_id, spec) for spec in specs[:runs]]
    variant_ids = {
        variant: log_variant_run(w, experiment_id, spec, variant)
        for spec, variant in zip(specs[runs:], ALL_VARIANTS, strict=True)
    }
    excluded = {variant_ids[v]: reason for v, reason in EXCLUDED_VARIANTS.items()}
    synthetic_run = w.classification_run(w.experiment(SYNTHETIC_EXPERIMENT), specs[0])
    excluded[synthetic_run] = "synthetic"
    imputation_ids = w.imputation_runs(imputation_runs, imputation_subjects, signal_length)
    return BadDemoStore(
        tracking_uri=w.tracking_uri,
        subject_map_path=w.write_subject_map(),
        good_run_ids=[*good, *(variant_ids[v] for v in VALID_VARIANTS)],
        imputation_run_ids=imputation_ids,
        bad_run_ids={variant_ids[v]: v for v in BAD_VARIANTS},
        excluded_run_ids=excluded,
        single_class_run_id=variant_ids["single_class"],
        pwned_marker=w.path / "PWNED",
    )
