"""The STRATOS tables of a run, checked against the published case study and on bad input."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import duckdb
import mlflow
import numpy as np
import pytest
from conftest import CASE_STUDY, run_cli

from mlruns_assets.demo.pickles import build_metrics_pickle
from mlruns_assets.demo.store import log_classification_run, tracking_uri_for
from mlruns_assets.runtime.errors import ExtractionError
from mlruns_assets.transform.run_names import parse_run_name
from mlruns_assets.transform.stratos import read_case_study
from mlruns_assets.transform.stratos_tables import build_stratos_tables, read_test_predictions

# stratos.md: values computed from the case study with exact formulas.
PUBLISHED = {
    "auroc": 0.911385,
    "brier_score": 0.132565,
    "scaled_brier": 0.469289,
    "o_e_ratio": 1.228075,
    "calibration_intercept": 0.809578,
    "calibration_slope": 0.933824,
    "net_benefit_10pct": 0.442704,
}


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


def test_case_study_run_extracts_the_published_values(tmp_path: Path) -> None:
    """A run built from the published case study in the seed layout, through the real
    tracking store and ``extract``, reproduces stratos.md to 1e-5."""
    y, p = read_case_study(CASE_STUDY)
    store = tmp_path / "store"
    store.mkdir()
    uri = tracking_uri_for(store, "sqlite")
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("Classification", artifact_location=(store / "a").as_uri())
    codes = np.array([f"PLR{i:04d}" for i in range(y.size)])
    # Every bootstrap column equals p, so the bootstrap-mean probability is p itself.
    log_classification_run(
        client,
        exp,
        "LogisticRegression_eval-auc__simple1.0__pupil-gt__pupil-gt",
        codes,
        y,
        np.repeat(p[:, None], 20, axis=1),
    )
    db = tmp_path / "results.duckdb"
    code, output = run_cli(
        "extract", "--tracking-uri", uri, "--db", str(db), "--dagster-home", str(tmp_path / "home")
    )
    assert code == 0, output
    with duckdb.connect(str(db), read_only=True) as conn:
        row = conn.execute(
            f"SELECT {', '.join(PUBLISHED)}, n_test, n_events, classifier "
            "FROM classification.essential_metrics"
        ).fetchone()
        assert row is not None
        n_pred = conn.execute("SELECT count(*) FROM classification.predictions").fetchone()
    for (name, expected), got in zip(PUBLISHED.items(), row, strict=False):
        assert got == pytest.approx(expected, abs=1e-5), name
    assert row[-3:] == (894, int(y.sum()), "LogisticRegression")
    assert n_pred == (894,)


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
