"""Experiment slugs, run eligibility, refusing missing stores, metric histories read in bulk,
and a worker's plain run record and local artifact reads against MLflow's."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import mlflow
import pytest
from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

from mlruns_assets.demo.store import write_demo_store
from mlruns_assets.runtime.errors import TrackingStoreError
from mlruns_assets.source.read_only_store import normalize_tracking_uri
from mlruns_assets.source.run_data import LocalRunReader, RunRecord
from mlruns_assets.source.tracking import (
    TrackingStore,
    exclusion_reason,
    slugify,
    unique_slugs,
)
from mlruns_assets.transform.run_record import runs_table

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Classification", "classification"),
        ("My Exp--2 (final)", "my_exp_2_final"),
        ("2024 runs", "e_2024_runs"),
        ("Ünïcødé", "n_c_d"),
        ("___", "experiment"),
    ],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


def _run(
    name: str, status: str = "FINISHED", stage: str = "active", tags: dict[str, str] | None = None
) -> mlflow.entities.Run:
    info = mlflow.entities.RunInfo(
        run_id="r",
        experiment_id="1",
        user_id="u",
        status=status,
        start_time=0,
        end_time=None,
        lifecycle_stage=stage,
        run_name=name,
        artifact_uri="file:///x",
    )
    data = mlflow.entities.RunData(
        tags=[mlflow.entities.RunTag(k, v) for k, v in (tags or {}).items()]
    )
    return mlflow.entities.Run(info, data)


def test_exclusion_reasons() -> None:
    finished = ("FINISHED",)
    assert exclusion_reason(_run("ok"), "Classification", finished) is None
    assert exclusion_reason(_run("__SYNTHETIC_x"), "Classification", finished) == "synthetic"
    assert exclusion_reason(_run("ok"), "synth_Classification", finished) == "synthetic"
    assert exclusion_reason(_run("ok", tags={"is_synthetic": "True"}), "C", finished) == "synthetic"
    assert exclusion_reason(_run("ok", stage="deleted"), "C", finished) == "deleted"
    assert exclusion_reason(_run("ok", status="RUNNING"), "C", finished) == "status RUNNING"
    assert exclusion_reason(_run("ok", status="FAILED"), "C", finished) == "status FAILED"
    assert exclusion_reason(_run("ok", status="FAILED"), "C", ("FINISHED", "FAILED")) is None


def test_missing_stores_are_refused_not_created(tmp_path: Path) -> None:
    with pytest.raises(TrackingStoreError, match="not an existing mlruns folder"):
        normalize_tracking_uri(str(tmp_path / "mlruns"))
    with pytest.raises(TrackingStoreError, match="no such SQLite file"):
        normalize_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    assert list(tmp_path.iterdir()) == []


def test_an_sqlite_store_given_as_a_path_is_refused_with_its_uri(tmp_path: Path) -> None:
    demo = write_demo_store(tmp_path / "store", runs=1, bootstraps=5, imputation_runs=0)
    database = demo.tracking_uri.removeprefix("sqlite:///")
    for given in (database, f"file://{database}"):
        with pytest.raises(TrackingStoreError) as refused:
            normalize_tracking_uri(given)
        assert str(refused.value).endswith(
            f"an SQLite file, not an mlruns folder: pass it as sqlite:///{Path(database).resolve()}"
        )
        assert normalize_tracking_uri(f"sqlite:///{Path(database).resolve()}")


def test_colliding_slugs_keep_the_oldest_plain_and_suffix_the_others() -> None:
    slugs = unique_slugs(
        [
            ("7", "sklearn breast cancer", 300),
            ("3", "sklearn-breast-cancer", 100),
            ("12", "Sklearn_Breast_Cancer", 200),
            ("4", "Classification", 50),
        ]
    )
    assert slugs == {
        "3": "sklearn_breast_cancer",
        "12": "sklearn_breast_cancer_12",
        "7": "sklearn_breast_cancer_7",
        "4": "classification",
    }
    # A later experiment with the same slug changes none of the existing ones.
    later = unique_slugs(
        [("3", "sklearn-breast-cancer", 100), ("99", "sklearn breast cancer", 900)]
    )
    assert later == {"3": "sklearn_breast_cancer", "99": "sklearn_breast_cancer_99"}


@pytest.mark.parametrize("backend", ["sqlite", "file"])
def test_bulk_metric_histories_equal_the_per_run_reads(tmp_path: Path, backend: str) -> None:
    demo = write_demo_store(
        tmp_path / "store", backend=backend, runs=3, bootstraps=5, imputation_runs=0
    )
    store = TrackingStore(demo.tracking_uri)
    (experiment,) = store.experiments(["Classification"])
    runs = list(store.iter_runs(experiment.experiment_id))
    # Points the demo does not log: a NaN, two keys at one step, a later point logged earlier.
    client = mlflow.MlflowClient(demo.tracking_uri)
    client.log_metric(runs[0].info.run_id, "extra", float("nan"), step=2, timestamp=5)
    client.log_metric(runs[0].info.run_id, "extra", 1.0, step=1, timestamp=9)
    client.log_metric(runs[0].info.run_id, "another", 2.0, step=1, timestamp=9)
    runs = list(TrackingStore(demo.tracking_uri).iter_runs(experiment.experiment_id))
    store = TrackingStore(demo.tracking_uri)
    bulk = store.metric_histories(runs)
    if backend == "file":  # no SQL to read in one query: each run reads its own
        assert bulk is None
        return
    assert bulk is not None and set(bulk) == {r.info.run_id for r in runs}
    for run in runs:
        assert repr(bulk[run.info.run_id]) == repr(store.metric_history(run))
    assert "another" in bulk[runs[0].info.run_id].keys


@pytest.mark.parametrize("backend", ["sqlite", "file"])
def test_a_workers_plain_run_and_local_artifacts_read_what_mlflow_reads(
    tmp_path: Path, backend: str
) -> None:
    demo = write_demo_store(
        tmp_path / "store", backend=backend, runs=2, bootstraps=5, imputation_runs=0
    )
    store = TrackingStore(demo.tracking_uri)
    (experiment,) = store.experiments(["Classification"])
    for run in store.iter_runs(experiment.experiment_id):
        record = RunRecord.of(run)
        assert record.info.run_name == run.info.run_name
        assert record.data.params == run.data.params and record.data.tags == run.data.tags
        assert runs_table(record, NOW).equals(runs_table(run, NOW))
        repository = LocalArtifactRepository(run.info.artifact_uri)
        metrics = Path(repository.artifact_dir) / "metrics"
        # What else a folder may hold: a FIFO (read, it names the problem), a file MLflow is
        # still writing (hidden), a subfolder (not a file).
        os.mkfifo(metrics / "metrics_fifo.pickle")
        (metrics / ".artifact.uploading.metrics_y.pickle").write_bytes(b"")
        (metrics / "sub").mkdir()
        with store.artifacts(run) as through_mlflow, LocalRunReader().artifacts(record) as local:
            for folder in ("metrics", "no_such_folder", "metrics/metrics_x.pickle"):
                assert local.list(folder) == through_mlflow.list(folder), folder
            listed = [p for p, _ in local.list("metrics")]
            assert "metrics/metrics_fifo.pickle" in listed and len(listed) == 2
            for path in listed:
                assert str(local.local_path(path)) == repository.get_local_path(path)
