"""The STRATOS tables of a run from its metrics pickle, on good and bad input."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import mlflow
import numpy as np
import pytest

from mlruns_assets.demo.pickles import build_metrics_pickle
from mlruns_assets.runtime.errors import ExtractionError
from mlruns_assets.transform.stratos_tables import build_stratos_tables, read_test_predictions


def _fake_run(name: str = "CATBOOST_eval-auc__simple1.0__SAITS__pupil-gt") -> mlflow.entities.Run:
    client_run = mlflow.entities.Run(
        mlflow.entities.RunInfo(
            run_id="r1",
            experiment_id="1",
            user_id="u",
            status="FINISHED",
            start_time=0,
            end_time=1,
            lifecycle_stage="active",
            run_name=name,
            artifact_uri="file:///x",
        ),
        mlflow.entities.RunData(),
    )
    return client_run


def _metrics(y: np.ndarray, p: np.ndarray) -> dict:
    rng = np.random.default_rng(1)
    codes = np.array([f"PLR{i:04d}" for i in range(y.size)])
    return build_metrics_pickle(codes, y, np.repeat(p[:, None], 5, axis=1), rng)


NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_single_class_test_set_gives_null_measures_and_says_why() -> None:
    y = np.zeros(12, dtype=int)
    p = np.linspace(0.05, 0.6, 12)
    tables, notes = build_stratos_tables(_fake_run(), _metrics(y, p), "metrics/m.pickle", None, NOW)
    row = next(t for s, t in tables.items() if s.name == "essential_metrics").to_pylist()[0]
    assert row["auroc"] is None and row["calibration_slope"] is None
    assert row["brier_score"] == pytest.approx(float(np.mean(p**2)))
    assert notes and "single-class" in notes[0]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda m: m["subjectwise_stats"]["test"].pop("labels"),
            "missing key subjectwise_stats.test.labels",
        ),
        (
            lambda m: m["subjectwise_stats"]["test"]["preds"]["y_pred_proba"]["mean"].__setitem__(
                0, np.nan
            ),
            "1 NaN or infinite probabilities",
        ),
        (
            lambda m: m["subjectwise_stats"]["test"]["preds"]["y_pred_proba"]["mean"].__setitem__(
                0, 1.5
            ),
            "probabilities outside [0, 1]",
        ),
        (
            lambda m: m["subjectwise_stats"]["test"]["labels"].__setitem__(0, 2),
            "labels outside {0, 1}: [2.0]",
        ),
        (
            lambda m: m["subjectwise_stats"]["test"].__setitem__(
                "subject_code", m["subjectwise_stats"]["test"]["subject_code"][:-1]
            ),
            "arrays of different lengths",
        ),
    ],
)
def test_bad_predictions_fail_with_the_cause_and_the_artifact(
    mutate: Callable[[dict], object], message: str
) -> None:
    y = np.array([0, 1] * 6)
    metrics = _metrics(y, np.linspace(0.1, 0.9, 12))
    mutate(metrics)
    with pytest.raises(ExtractionError) as err:
        read_test_predictions(metrics, "metrics/metrics_x.pickle")
    assert message in str(err.value) and "metrics/metrics_x.pickle" in str(err.value)
    assert "\n" not in str(err.value)


def test_unmapped_codes_fail_and_mapped_codes_are_replaced() -> None:
    y = np.array([0, 1] * 6)
    metrics = _metrics(y, np.linspace(0.1, 0.9, 12))
    mapping = {f"PLR{i:04d}": f"H{i:03d}" for i in range(11)}
    with pytest.raises(ExtractionError, match="1 subject code"):
        build_stratos_tables(_fake_run(), metrics, "m", mapping, NOW)
    mapping["PLR0011"] = "G001"
    tables, _ = build_stratos_tables(_fake_run(), metrics, "m", mapping, NOW)
    codes = next(t for s, t in tables.items() if s.name == "predictions")["subject_code"]
    assert codes.to_pylist()[-1] == "G001" and not any(
        c.startswith("PLR") for c in codes.to_pylist()
    )


def test_every_table_matches_its_declared_schema() -> None:
    y = np.array([0, 1] * 10)
    tables, _ = build_stratos_tables(
        _fake_run(), _metrics(y, np.linspace(0.01, 0.99, 20)), "m", None, NOW
    )
    for spec, table in tables.items():
        assert table.schema.equals(spec.schema), spec.name
        assert table.num_rows > 0
