"""Parsing run names: classification runs are
``{CLASSIFIER}_eval-{metric}__{featurization}__{imputation}__{outlier}``, imputation runs
``{imputation}__{outlier}``.
"""

from __future__ import annotations

from dataclasses import dataclass

# Canonical spellings: run names vary in case (CatBoost vs CATBOOST) and the original project
# lost rows to that mismatch, so classifiers are matched case-insensitively.
CANONICAL_CLASSIFIERS = ("CATBOOST", "XGBOOST", "LogisticRegression", "TabPFN", "TabM")
_BY_LOWER = {c.lower(): c for c in CANONICAL_CLASSIFIERS}


@dataclass(frozen=True)
class RunNameParts:
    """The pipeline stages a classification run name encodes (None where the name is shorter)."""

    classifier: str | None
    featurization: str | None
    imputation_method: str | None
    outlier_method: str | None


def canonical_classifier(name: str) -> str:
    return _BY_LOWER.get(name.lower(), name)


def parse_run_name(run_name: str | None) -> RunNameParts:
    """Split on ``__``; the classifier is the first ``_`` token of part 0. Legacy names may have
    fewer parts: missing stages are None, never guessed."""
    if not run_name:
        return RunNameParts(None, None, None, None)
    parts = run_name.split("__")
    classifier = canonical_classifier(parts[0].split("_")[0]) if parts[0] else None

    def part(i: int) -> str | None:
        return parts[i] if len(parts) > i and parts[i] else None

    return RunNameParts(classifier, part(1), part(2), part(3))


def parse_imputation_run_name(run_name: str | None) -> tuple[str | None, str | None]:
    """(imputation, outlier) from ``{imputation}__{outlier}``; both None unless the name has
    exactly these two non-empty parts."""
    parts = (run_name or "").split("__")
    if len(parts) != 2 or not all(parts):
        return None, None
    return parts[0], parts[1]
