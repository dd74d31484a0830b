"""OLD-MLFLOW TEST: a SQLite store written by MLflow 2.17 in its own virtual environment (schema
``f5a4f2784254``), as a lab that never upgraded has it, extracted with today's MLflow.

The installed MLflow would migrate such a file in place, after which MLflow 2.17 cannot open it
any more (``Can't locate revision identified by ...``). ``mlruns-assets extract`` must read it
through a temporary copy: the rows come out right, the file is byte-identical afterwards and
MLflow 2.17 still finds its runs.

The MLflow 2.17 environment is built with uv on first use (network needed) and kept in
``~/.cache/mlruns-assets-tests/mlflow-2.17`` for later sessions (see
``support/legacy_mlflow.py``); the test is skipped only when uv is not available."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from mlruns_assets.source.store_schema import sqlite_schema_revision
from mlruns_assets.source.tracking import TrackingStore
from mlruns_assets_tests.support.cli import run_cli
from mlruns_assets_tests.support.legacy_mlflow import (
    MLFLOW_VERSION,
    SCHEMA_REVISION,
    LegacyStore,
    legacy_mlflow_python,
    legacy_run_ids,
    uv_command,
    write_legacy_store,
)
from mlruns_assets_tests.support.snapshots import changes, sha256, tree_snapshot


@pytest.fixture(scope="session")
def mlflow_2_17_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if uv_command() is None:
        pytest.skip("uv is not available to build the MLflow 2.17 environment")
    return legacy_mlflow_python(tmp_path_factory.mktemp("legacy_venv"))


@pytest.fixture
def legacy_store(mlflow_2_17_python: Path, tmp_path: Path) -> LegacyStore:
    store = write_legacy_store(mlflow_2_17_python, tmp_path / "lab")
    assert store.mlflow_version == MLFLOW_VERSION
    assert sqlite_schema_revision(store.db_path) == SCHEMA_REVISION
    return store


def test_old_mlflow_store_is_extracted_unchanged_and_still_opens_in_old_mlflow(
    legacy_store: LegacyStore, mlflow_2_17_python: Path, tmp_path: Path
) -> None:
    digest, before = sha256(legacy_store.db_path), tree_snapshot(legacy_store.folder)
    database = tmp_path / "results.duckdb"

    code, output = run_cli(
        "extract",
        "--tracking-uri",
        legacy_store.tracking_uri,
        "--db",
        str(database),
        "--dagster-home",
        str(tmp_path / "home"),
    )

    assert code == 0, output
    assert "materialized 3" in output and "failed 0" in output, output
    with duckdb.connect(str(database), read_only=True) as conn:
        runs = conn.execute("SELECT run_id, status FROM lab.runs").fetchall()
        points = conn.execute("SELECT run_id, key, step, value FROM lab.metric_history").fetchall()
    assert sorted(runs) == sorted((run_id, "FINISHED") for run_id in legacy_store.points)
    expected = [(r, k, s, v) for r, pts in legacy_store.points.items() for k, s, v in pts]
    assert sorted(points) == sorted(expected)
    assert len(points) == 15

    assert sha256(legacy_store.db_path) == digest
    assert changes(before, tree_snapshot(legacy_store.folder)) == {}
    assert sqlite_schema_revision(legacy_store.db_path) == SCHEMA_REVISION
    assert sorted(legacy_run_ids(mlflow_2_17_python, legacy_store)) == sorted(legacy_store.points)


def test_old_mlflow_store_is_read_through_a_removed_temporary_copy(
    legacy_store: LegacyStore, tmp_path: Path
) -> None:
    """The same through ``TrackingStore``: the copy, the artifact read in place, the cleanup."""
    before = tree_snapshot(legacy_store.folder)
    with TrackingStore(legacy_store.tracking_uri) as store:
        assert store.access == "temporary copy" and store.copy is not None
        assert f"older schema {SCHEMA_REVISION}" in store.access_detail
        copy = store.copy.folder
        (experiment,) = store.experiments()
        runs = {r.info.run_id: r for r in store.iter_runs(experiment.experiment_id)}
        assert set(runs) == set(legacy_store.points)
        for run_id, run in runs.items():
            history = store.metric_history(run)
            got = sorted(zip(history.keys, history.steps, history.values, strict=True))
            assert got == sorted(legacy_store.points[run_id])
        notes = []
        for run in runs.values():
            with store.artifacts(run) as artifacts:
                notes += [artifacts.local_path(p).read_text() for p, _ in artifacts.list("")]
        assert notes == ["a small artifact"]
    assert not copy.exists()
    assert changes(before, tree_snapshot(legacy_store.folder)) == {}


def test_the_command_removes_its_temporary_copy_when_it_exits(
    legacy_store: LegacyStore, tmp_path: Path
) -> None:
    """The command exits without the interpreter's teardown (``cli.main.run``): its exit
    handlers must still run, or the private copy of the store would stay behind."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    argv = [sys.executable, "-m", "mlruns_assets.cli", "extract", "--tracking-uri"]
    argv += [legacy_store.tracking_uri, "--db", str(tmp_path / "r.duckdb")]
    done = subprocess.run(
        argv, env={**os.environ, "TMPDIR": str(scratch)}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "materialized 3" in done.stdout, done.stdout + done.stderr
    assert list(scratch.iterdir()) == []
