"""Imputation pickles for the signal tests, and the ways of breaking them (each with the
message its failure must carry)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlruns_assets.demo.pickles import build_imputation_pickle

WHERE = "imputation/imputation_X.pickle"
TRAIN_TIME = "source_data.df.train.time.time"
TRAIN_MEAN = "model_artifacts.imputation.train.imputation_dict.imputation.mean"
TEST_CODES = "source_data.df.test.metadata.subject_code"


def imputation_pickle(n: int = 10, length: int = 30, seed: int = 0) -> dict[str, Any]:
    """An imputation pickle of ``n`` subjects (PLR1000...) and ``length`` time points."""
    codes = np.array([f"PLR{1000 + i}" for i in range(n)])
    labels = np.arange(n) % 2
    return build_imputation_pickle(codes, labels, np.random.default_rng(seed), length)


def _drop(path: tuple[Any, ...]) -> Any:
    def mutate(data: dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def _set(path: tuple[Any, ...], make: Any) -> Any:
    def mutate(data: dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = make(target[path[-1]])

    return mutate


MEAN_PATH = ("model_artifacts", "imputation", "train", "imputation_dict", "imputation", "mean")
BAD_INPUT = {
    "missing time": (
        _drop(("source_data", "df", "train", "time", "time")),
        f"missing key {TRAIN_TIME}",
    ),
    "missing split": (
        _drop(("model_artifacts", "imputation", "test")),
        "missing key model_artifacts.imputation.test",
    ),
    "missing codes": (
        _drop(("source_data", "df", "test", "metadata")),
        "missing key source_data.df.test.metadata",
    ),
    "no splits": (_set(("source_data", "df"), lambda _: {}), "source_data.df holds no splits"),
    "time shorter": (
        _set(("source_data", "df", "train", "time", "time"), lambda a: a[:, :-1]),
        f"{TRAIN_TIME} has shape (7, 29) but {TRAIN_MEAN} has (7, 30, 1)",
    ),
    "mean not (n, T, 1)": (
        _set(MEAN_PATH, lambda a: np.repeat(a, 2, axis=2)),
        f"{TRAIN_MEAN} has shape (7, 30, 2), expected (subjects, time points, 1)",
    ),
    "codes disagree with signals": (
        _set(("source_data", "df", "test", "metadata", "subject_code"), lambda a: a[:-1]),
        f"{TEST_CODES} has 2 subjects but",
    ),
    "time not numeric": (
        _set(("source_data", "df", "train", "time", "time"), lambda a: a.astype(str)),
        f"{TRAIN_TIME} is not numeric",
    ),
}  # fmt: skip
