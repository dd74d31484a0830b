"""A real MLflow tracking server on loopback (remote artifacts), and the helper commands."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import mlflow
import numpy as np
import pytest

from mlruns_assets.demo.store import log_classification_run
from mlruns_assets.pipeline.extraction_pool import ExtractedRun, ExtractionPool, extracted_in_order
from mlruns_assets.pipeline.run_extraction import ExtractionSettings, RunExtraction
from mlruns_assets.runtime.progress import ExtractionProgress
from mlruns_assets.runtime.settings import Kind
from mlruns_assets.source.tracking import TrackingStore
from mlruns_assets.transform.subjects import load_subject_map
from mlruns_assets.warehouse.validation import check_database
from mlruns_assets_tests.support.cli import Extracted, run_cli
from mlruns_assets_tests.support.mlflow_server import running_mlflow_server


@pytest.fixture()
def tracking_server(tmp_path: Path) -> Iterator[str]:
    """``mlflow server`` with proxied artifacts: runs get ``mlflow-artifacts:`` URIs."""
    with running_mlflow_server(tmp_path) as uri:
        yield uri


def _log_runs(tracking_uri: str, runs: int = 2) -> list[str]:
    client = mlflow.MlflowClient(tracking_uri)
    exp = client.create_experiment("Classification")
    rng = np.random.default_rng(3)
    y = np.array([0, 1] * 15)
    p = np.clip(0.3 + 0.4 * y[:, None] + rng.normal(0, 0.15, (30, 8)), 0.01, 0.99)
    codes = np.array([f"PLR{i:04d}" for i in range(30)])
    run_ids = [
        log_classification_run(
            client, exp, f"CATBOOST_eval-auc__simple1.0__SAITS__m{i}", codes, y, p
        )
        for i in range(runs)
    ]
    assert client.get_run(run_ids[0]).info.artifact_uri.startswith("mlflow-artifacts:")
    return run_ids


def test_workers_read_remote_artifacts_through_mlflow(tracking_server: str) -> None:
    """A worker that meets a run with remote artifacts opens the store through MLflow (the
    local-file path, without MLflow, is in test_extraction_pool) and gives the same tables."""
    run_ids = _log_runs(tracking_server)
    store = TrackingStore(tracking_server)
    (experiment,) = store.experiments(["Classification"])
    settings = ExtractionSettings(kind=Kind.CLASSIFICATION)
    progress = ExtractionProgress(total=len(run_ids), emit=lambda _line: None)

    def extracted(pool: ExtractionPool | None) -> list[ExtractedRun]:
        return list(
            extracted_in_order(store, experiment, run_ids, settings, progress, pool, lambda: False)
        )

    pool = ExtractionPool(store.client.tracking_uri, workers=2)
    try:
        pool._started.result(timeout=120)
        pooled, serial = extracted(pool), extracted(None)
        assert all(i.worker_peak_rss > 0 for i in pooled)  # extracted by the workers
        for a, b in zip(pooled, serial, strict=True):
            assert isinstance(a.result, RunExtraction) and isinstance(b.result, RunExtraction)
            assert {s.name for s in a.result.tables} == {s.name for s in b.result.tables}
            assert a.result.summary == b.result.summary
        probe = "'mlflow' in __import__('sys').modules"
        assert True in [pool._executor.submit(eval, probe).result(timeout=60) for _ in range(4)]
    finally:
        pool.shutdown()


def test_extract_from_a_tracking_server_downloads_and_cleans_up(
    tracking_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _log_runs(tracking_server)
    downloads = tmp_path / "tmp"
    downloads.mkdir()
    monkeypatch.setenv("TMPDIR", str(downloads))  # where per-partition downloads go
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    db = tmp_path / "results.duckdb"
    code, output = run_cli(
        "extract",
        "--tracking-uri",
        tracking_server,
        "--db",
        str(db),
        "--dagster-home",
        str(tmp_path / "home"),
    )
    assert code == 0, output
    assert "Downloading artifacts" not in output  # one progress display: MLflow's is silenced
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM classification.predictions").fetchone() == (60,)
    assert not [p for p in downloads.iterdir() if p.name.startswith("mlra-")]


def test_subject_map_command_builds_sorted_private_codes(
    bad_store_extracted: Extracted, tmp_path: Path
) -> None:
    store = bad_store_extracted.store
    out = tmp_path / "private" / "map.csv"
    code, output = run_cli(
        "subject-map",
        "--tracking-uri",
        store.tracking_uri,
        "--experiment",
        "Classification",
        "--out",
        str(out),
    )
    assert code == 0, output
    built = load_subject_map(out)
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    demo_map = load_subject_map(store.subject_map_path)
    # Every readable run's test subjects (the demo's unmapped run included), each with the class
    # letter the demo gave it, numbered in sorted order per class.
    shared = set(built) & set(demo_map)
    assert shared and all(built[c][0] == demo_map[c][0] for c in shared)
    assert any(c.startswith("PLR9") for c in built)
    controls = sorted(c for c, a in built.items() if a.startswith("H"))
    assert [built[c] for c in controls] == [f"H{i:03d}" for i in range(1, len(controls) + 1)]


def test_registry_and_synthetic_checks_flag_what_they_should(
    bad_store_extracted: Extracted, tmp_path: Path
) -> None:
    db = tmp_path / "copy.duckdb"
    shutil.copy(bad_store_extracted.database, db)
    registry = {"classifier": {"CATBOOST", "XGBOOST"}}
    results = check_database(db, subject_map_configured=True, registry=registry)
    by_check = {o.check: o for schema, o in results if schema == "classification"}
    assert not by_check["classifier_in_registry"].passed
    flagged = by_check["classifier_in_registry"].detail.split(", ")
    assert flagged and not set(flagged) & registry["classifier"]
    assert by_check["synthetic_runs_absent"].passed
    with duckdb.connect(str(db)) as conn:
        conn.execute(
            "UPDATE classification.runs SET run_name = '__SYNTHETIC_x' WHERE rowid = 0;"
            "UPDATE classification.predictions SET subject_code = 'PLR0001' WHERE rowid = 0"
        )
    results = check_database(db, subject_map_configured=True)
    by_check = {o.check: o for schema, o in results if schema == "classification"}
    assert not by_check["synthetic_runs_absent"].passed
    assert not by_check["no_original_subject_codes"].passed
    assert "1 row(s) match" in by_check["no_original_subject_codes"].detail
