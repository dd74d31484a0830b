"""Every subject code the runs of some experiments carry, with its class where a run records it:
what ``mlruns-assets subject-map`` numbers. One pickle is in memory at a time; only the codes
(and labels) are kept between runs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlruns_assets.runtime.errors import one_line
from mlruns_assets.runtime.guardrails import MemoryGuard
from mlruns_assets.runtime.settings import Kind
from mlruns_assets.source.artifacts import load_imputation_artifact, load_metrics_artifact
from mlruns_assets.source.safe_pickle import load_untrusted_pickle
from mlruns_assets.source.tracking import (
    ExperimentRef,
    RunArtifacts,
    TrackingStore,
    exclusion_reason,
)
from mlruns_assets.transform.arrays import dig
from mlruns_assets.transform.signals import CODES, DF, split_names
from mlruns_assets.transform.stratos_tables import read_test_predictions
from mlruns_assets.transform.subjects import record_label

DICT_ARRAYS_FOLDER = "dict_arrays"


@dataclass
class SubjectInventory:
    """Subject code -> class (None: no run records it), and the runs that could not be read."""

    labels: dict[str, int | None] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)  # run id -> cause

    def add(self, codes: Iterable[str], labels: Iterable[int | None]) -> None:
        for code, label in zip(codes, labels, strict=True):
            record_label(self.labels, code, label)


def _first_column(codes: Any) -> list[str]:
    array = np.asarray(codes)
    return (array[:, 0] if array.ndim == 2 else array).astype(str).tolist()  # type: ignore[no-any-return]


def _classification_subjects(artifacts: RunArtifacts, inventory: SubjectInventory) -> None:
    metrics, path = load_metrics_artifact(artifacts, MemoryGuard(None))
    codes, y, _, _ = read_test_predictions(metrics, path)
    del metrics
    inventory.add(np.asarray(codes).astype(str).tolist(), y.tolist())
    # dictArrays_{run}.pickle: the folder's prefix differs from its name, unlike the others.
    found = [p for p, _ in artifacts.list(DICT_ARRAYS_FOLDER) if p.endswith(".pickle")]
    if len(found) != 1:  # optional in the seed layout; several: cannot tell which
        return
    where = found[0]
    arrays = load_untrusted_pickle(artifacts.local_path(where), display_name=where)
    for split in ("train", "test"):
        split_codes = _first_column(dig(arrays, (f"subject_codes_{split}",), where))
        split_labels = np.asarray(dig(arrays, (f"y_{split}",), where)).astype(int).tolist()
        inventory.add(split_codes, split_labels)


def _imputation_subjects(artifacts: RunArtifacts, inventory: SubjectInventory) -> None:
    data, path = load_imputation_artifact(artifacts, MemoryGuard(None))
    for split in split_names(data, path):
        codes = _first_column(dig(data, (*DF, split, *CODES), path))
        inventory.add(codes, [None] * len(codes))


def collect_subjects(
    store: TrackingStore,
    experiments: Iterable[tuple[ExperimentRef, Kind]],
) -> SubjectInventory:
    """The subjects of every admitted run of the given experiments (classification: test
    predictions and, when present, the train/test splits of ``dict_arrays``; imputation: every
    split of the imputation pickle). A run that cannot be read is noted, not fatal: ``extract``
    reports it."""
    inventory = SubjectInventory()
    readers = {Kind.CLASSIFICATION: _classification_subjects, Kind.IMPUTATION: _imputation_subjects}
    for experiment, kind in experiments:
        reader = readers.get(kind)
        if reader is None:
            continue
        for run in store.iter_runs(experiment.experiment_id):
            if exclusion_reason(run, experiment.name, ("FINISHED",)) is not None:
                continue
            try:
                with store.artifacts(run) as artifacts:
                    reader(artifacts, inventory)
            except Exception as exc:  # one bad run must not stop the inventory
                inventory.unreadable[run.info.run_id] = one_line(exc)
    return inventory
