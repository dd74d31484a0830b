"""The published STRATOS case study as a run in the seed layout, extracted through a real
tracking store and ``mlruns-assets extract``: the published values to 1e-5."""

from __future__ import annotations

from pathlib import Path

import duckdb
import mlflow
import numpy as np
import pytest

from mlruns_assets.demo.store import log_classification_run, tracking_uri_for
from mlruns_assets.transform.stratos import read_case_study
from mlruns_assets_tests.support.cli import run_cli
from mlruns_assets_tests.support.data import CASE_STUDY

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
