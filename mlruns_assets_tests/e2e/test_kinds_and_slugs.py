"""Kinds come from what the runs carry, the name only as a hint; experiments whose names give
the same slug get their own schemas and asset keys (issue 15)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import mlflow
import numpy as np
import pytest

from mlruns_assets.demo.store import log_classification_run, tracking_uri_for
from mlruns_assets_tests.support.cli import run_cli


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite store: an autolog-like experiment named like a classifier but carrying no
    seed-layout pickles, two experiments whose names collide after slugging, and a seed-layout
    classification experiment under a name that says nothing."""
    root = tmp_path_factory.mktemp("kinds")
    uri = tracking_uri_for(root, "sqlite")
    client = mlflow.MlflowClient(tracking_uri=uri)
    artifacts = root / "artifacts"
    for name in ("rf-classifier", "sklearn-breast-cancer", "sklearn breast cancer"):
        experiment_id = client.create_experiment(name, artifact_location=str(artifacts / name))
        run = client.create_run(experiment_id, run_name=f"{name} run")
        client.log_metric(run.info.run_id, "training_accuracy_score", 0.9)
        client.log_param(run.info.run_id, "n_estimators", "100")
        note = root / "estimator.html"
        note.write_text("<html>RandomForestClassifier</html>")
        client.log_artifact(run.info.run_id, str(note))
        client.set_terminated(run.info.run_id)
    experiment_id = client.create_experiment("study-A", artifact_location=str(artifacts / "a"))
    rng = np.random.default_rng(1)
    y = np.array([0, 1] * 10)
    proba = np.clip(0.3 + 0.4 * y[:, None] + rng.normal(0, 0.1, (20, 30)), 0.01, 0.99)
    codes = [f"PLR{i:04d}" for i in range(20)]
    log_classification_run(
        client, experiment_id, "CATBOOST_eval-auc__simple1.0__SAITS__LOF", codes, y, proba
    )
    return uri


def schemas_and_tables(database: Path) -> dict[str, set[str]]:
    with duckdb.connect(str(database), read_only=True) as conn:
        rows = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema != 'main'"
        ).fetchall()
    found: dict[str, set[str]] = {}
    for schema, table in rows:
        found.setdefault(schema, set()).add(table)
    return found


def test_kinds_from_content_and_colliding_names_extract(store: str, tmp_path: Path) -> None:
    database = tmp_path / "r.duckdb"
    code, output = run_cli("extract", "--tracking-uri", store, "--db", str(database))
    assert code == 0, output
    found = schemas_and_tables(database)
    run_record = {"runs", "metric_history"}
    assert found["rf_classifier"] == run_record  # named like a classifier, carries no pickle
    assert found["study_a"] >= {"essential_metrics", "predictions"}  # the pickles decide
    collided = sorted(s for s in found if s.startswith("sklearn_breast_cancer"))
    assert len(collided) == 2 and collided[0] == "sklearn_breast_cancer"
    assert all(found[s] == run_record for s in collided)
    # A kind given by hand still wins; a missing kind artifact names the override.
    code, output = run_cli(
        "extract",
        "--tracking-uri",
        store,
        "--db",
        str(tmp_path / "forced.duckdb"),
        "--experiment",
        "rf-classifier",
        "--kind",
        "rf-classifier=classification",
    )
    assert code == 1
    assert "missing metrics artifact" in output
    assert "--kind 'rf-classifier=generic'" in output
