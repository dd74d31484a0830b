"""Guardrails on the real extraction path: heartbeats from inside a partition (command output and
Dagster event log), the memory guard failing every partition before anything is written, and the
free-disk preflight refusing to start. Real demo MLflow stores, real DuckDB files, a persistent
Dagster instance; the heartbeat test runs ``mlruns-assets extract`` as a separate process."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from mlruns_assets.defs.project import build_definitions
from mlruns_assets.demo.store import DemoStore, write_demo_store
from mlruns_assets.runtime.instance import open_instance
from mlruns_assets.runtime.progress import PROGRESS_PREFIX
from mlruns_assets.runtime.settings import ENV_PREFIX, Settings
from mlruns_assets_tests.support.cli import extract_command, run_extract

# Per run; the metric histories are read a window of runs at a time (one line per window).
HEARTBEAT_NOTES = ("loading metrics/metrics_", "committing")
WINDOW_NOTE = "reading the metric history of"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    return write_demo_store(
        tmp_path_factory.mktemp("guardrails") / "store",
        backend="sqlite",
        runs=3,
        bootstraps=20,
        imputation_runs=1,
    )


def test_extract_reports_heartbeats_in_its_output_and_in_the_event_log(
    demo: DemoStore, tmp_path: Path
) -> None:
    database, home = tmp_path / "results.duckdb", tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    done = subprocess.run(
        extract_command(demo, database, home, "--heartbeat-seconds", "0"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    # Not a TTY: every heartbeat is printed as a whole line, naming the run and the step.
    heartbeats = [line for line in output.splitlines() if line.startswith(PROGRESS_PREFIX)]
    for run_id in demo.good_run_ids:
        mine = [line for line in heartbeats if f"run {run_id}: " in line]
        for note in HEARTBEAT_NOTES:
            assert any(note in line for line in mine), (run_id, note, output)
    assert any(WINDOW_NOTE in line for line in heartbeats), output
    assert all("RSS" in line and "ETA" in line for line in heartbeats)

    with open_instance(home) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="classification_extraction_job"))
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS]
        messages = [
            r.event_log_entry.user_message
            for r in instance.get_records_for_run(runs[0].run_id).records
        ]
        logged = [m for m in messages if m.startswith(PROGRESS_PREFIX)]
        for run_id in demo.good_run_ids:
            for note in HEARTBEAT_NOTES:
                assert any(f"run {run_id}: " in m and note in m for m in logged), (run_id, note)
            assert any(m.endswith(f"| done {run_id}") for m in logged)
        assert any(WINDOW_NOTE in m for m in logged)
        # Each partition's materialization still carries its duration, peak RSS and rows.
        for record in instance.fetch_materializations(
            dg.AssetKey(["classification", "stratos"]), limit=100
        ).records:
            materialization = record.asset_materialization
            assert materialization is not None
            meta = materialization.metadata
            assert meta["rows/predictions"].value == 63
            assert float(meta["duration_s"].value) > 0  # type: ignore[arg-type]
            assert float(meta["peak_rss_mb"].value) > 50  # type: ignore[arg-type]


def test_memory_limit_fails_every_partition_naming_limit_rss_and_artifact(
    demo: DemoStore, tmp_path: Path
) -> None:
    database, home = tmp_path / "results.duckdb", tmp_path / "home"
    result = run_extract(
        demo,
        database,
        home,
        "--experiment",
        "Classification",
        "--subject-map",
        str(demo.subject_map_path),
        "--max-memory-gb",
        "0.05",
    )
    assert result.exit_code == 1, result.output
    failed = [line for line in result.output.splitlines() if line.startswith("FAILED")]
    assert len(failed) == len(demo.good_run_ids), result.output
    for run_id in demo.good_run_ids:
        (line,) = [f for f in failed if run_id in f]
        assert "memory limit 0.05 GB exceeded: RSS 0." in line, line
        assert "artifact" in line and "at loading metrics/metrics_" in line, line
    assert f"materialized 0, skipped 0, excluded 0, failed {len(demo.good_run_ids)}" in (
        result.output.replace(" (up to date)", "")
    )
    # Nothing was written: no row in any table, no materialized partition.
    if database.exists():
        with duckdb.connect(str(database), read_only=True) as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'classification'"
            ).fetchall()
            for (table,) in tables:
                count = conn.execute(f'SELECT count(*) FROM classification."{table}"').fetchone()
                assert count == (0,), table
    with open_instance(home) as instance:
        key = dg.AssetKey(["classification", "runs"])
        assert instance.get_materialized_partitions(key) == set()


def test_preflight_refuses_to_start_below_the_free_disk_minimum(
    demo: DemoStore, tmp_path: Path
) -> None:
    database, home = tmp_path / "out" / "results.duckdb", tmp_path / "home"
    above_free = shutil.disk_usage(tmp_path).free / 1e9 + 1000
    result = run_extract(demo, database, home, "--min-free-disk-gb", f"{above_free:.0f}")
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert result.output.startswith("mlruns-assets: error: only ")
    assert "free on the disk of" in result.output and "--min-free-disk-gb" in result.output
    assert not database.exists() and not home.exists()


def test_extraction_step_fails_at_once_below_the_free_disk_minimum(
    demo: DemoStore, tmp_path: Path
) -> None:
    config = Settings(
        tracking_uri=demo.tracking_uri,
        database=str(tmp_path / "results.duckdb"),
        experiments=("Classification",),
        subject_map=str(demo.subject_map_path),
        min_free_disk_gb=shutil.disk_usage(tmp_path).free / 1e9 + 1000,
    )
    with open_instance(tmp_path / "home") as instance:
        instance.add_dynamic_partitions("classification_runs", demo.good_run_ids[:1])
        job = build_definitions(config).resolve_job_def("classification_extraction_job")
        result = job.execute_in_process(
            instance=instance, partition_key=demo.good_run_ids[0], raise_on_error=False
        )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "free on the disk of" in str(failure.step_failure_data.error)
    assert not (tmp_path / "results.duckdb").exists()
