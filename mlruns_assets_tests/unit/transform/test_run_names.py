"""Parsing run names into classifier and method names."""

from __future__ import annotations

import pytest

from mlruns_assets.transform.run_names import parse_run_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "CatBoost_eval-auc__simple1.0__SAITS__pupil-gt",
            ("CATBOOST", "simple1.0", "SAITS", "pupil-gt"),
        ),
        (
            "LogisticRegression_eval-roc_auc__simple1.0__MOMENT-zeroshot__OneClassSVM",
            ("LogisticRegression", "simple1.0", "MOMENT-zeroshot", "OneClassSVM"),
        ),
        ("XGBOOST_eval-auc__simple1.0", ("XGBOOST", "simple1.0", None, None)),
        ("", (None, None, None, None)),
    ],
)
def test_run_names_parse_with_canonical_classifier(name: str, expected: tuple) -> None:
    parts = parse_run_name(name)
    assert (
        parts.classifier,
        parts.featurization,
        parts.imputation_method,
        parts.outlier_method,
    ) == expected
