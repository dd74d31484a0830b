"""The stall sensor: its decisions as plain functions, and the real thing under a real
``dagster-daemon`` with a run whose metrics artifact is a FIFO, so that reading it blocks forever.

The daemon test configures short timeouts (stall timeout, sensor interval) through the project
configuration, the way ``mlruns-assets ui`` passes them, not by sleeping for minutes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psutil
import pytest
from conftest import run_cli

from mlruns_assets.defs.project import build_definitions
from mlruns_assets.defs.stall_sensor import (
    SENSOR_NAME,
    WatchedRun,
    find_stalled_runs,
    pending_partitions,
    run_partition_keys,
    stall_message,
)
from mlruns_assets.demo.store import write_demo_store
from mlruns_assets.runtime.instance import open_instance, prepare_dagster_home
from mlruns_assets.runtime.progress import PROGRESS_PREFIX
from mlruns_assets.runtime.settings import ENV_PREFIX, Settings
from mlruns_assets.runtime.worker import (
    WORKER_TAG,
    WorkerProcess,
    live_process,
    parse_worker_tag,
    worker_tags,
)
from mlruns_assets.source.tracking import ExperimentRef
from mlruns_assets_tests.support.processes import stop_process_group

# Healthy steps here log at least every 0.4 s (measured under load, heartbeat 0); the 10-15 s
# launch happens before RUN_START, while the run is not yet STARTED (not watched).
STALL_TIMEOUT = 8.0
SENSOR_INTERVAL = 1  # the daemon looks at most every 5 s anyway
DAEMON_DEADLINE = 150.0
JOB = "classification_extraction_job"


# --------------------------------------------------------------------------- plain functions
def test_find_stalled_runs_picks_runs_silent_past_the_timeout_longest_first() -> None:
    runs = [
        WatchedRun("fresh", last_event_at=995.0),
        WatchedRun("edge", last_event_at=910.0),  # exactly at the timeout: not yet
        WatchedRun("old", last_event_at=100.0),
        WatchedRun("stale", last_event_at=900.0),
    ]
    stalled = find_stalled_runs(runs, now=1000.0, timeout_seconds=90.0)
    assert [(s.run_id, s.idle_seconds) for s in stalled] == [("old", 900.0), ("stale", 100.0)]
    assert find_stalled_runs([], now=1000.0, timeout_seconds=90.0) == []


def test_run_partition_keys_and_pending_partitions() -> None:
    ordered = ["a", "b", "c", "d", "e"]
    assert run_partition_keys({"dagster/partition": "c"}, ordered) == ["c"]
    tags = {
        "dagster/asset_partition_range_start": "b",
        "dagster/asset_partition_range_end": "d",
    }
    assert run_partition_keys(tags, ordered) == ["b", "c", "d"]
    assert run_partition_keys({**tags, "dagster/asset_partition_range_end": "zz"}, ordered) == []
    assert run_partition_keys({}, ordered) == []
    assert pending_partitions(["b", "c", "d"], {"b", "x"}) == ["c", "d"]


def test_stall_message_is_one_line_naming_partitions_and_last_progress() -> None:
    pending = [f"k{i}" for i in range(9)]
    message = stall_message(97.4, 90.0, pending, "[progress] 3/12 partitions | loading x")
    assert message == (
        "stalled in partition k0 (not reached: k1, k2, k3, k4 and 4 more): no event for 97 s "
        "(stall timeout 90 s); last progress: [progress] 3/12 partitions | loading x"
    )
    assert stall_message(5, 4, [], None).endswith("last progress: none yet")
    assert "\n" not in message


def test_worker_tag_identifies_a_live_process_and_not_a_reused_pid() -> None:
    me = parse_worker_tag(worker_tags()[WORKER_TAG])
    assert me is not None and me.pid == os.getpid()
    assert parse_worker_tag("not json") is None and parse_worker_tag(None) is None
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = psutil.Process(child.pid).create_time()
        worker = WorkerProcess(me.host, child.pid, started)
        assert live_process(worker) is not None
        assert live_process(WorkerProcess("another-host", child.pid, started)) is None
        assert live_process(WorkerProcess(me.host, child.pid, started + 3600)) is None  # reused
        assert live_process(WorkerProcess(me.host, child.pid, None, started - 60)) is None
        assert live_process(WorkerProcess(me.host, child.pid, None, started + 5)) is not None
        assert live_process(me) is None  # never the sensor's own process
    finally:
        child.kill()
        child.wait()
    assert live_process(WorkerProcess(me.host, child.pid, started)) is None


def test_one_stall_sensor_per_code_location_configured_from_the_environment() -> None:
    env = Settings(
        tracking_uri="sqlite:///unused.db",
        database="unused.duckdb",
        stall_timeout_seconds=42,
        stall_sensor_interval_seconds=7,
    ).to_env()
    assert env[f"{ENV_PREFIX}STALL_TIMEOUT_SECONDS"] == "42"
    config = Settings.from_env(env)
    assert config is not None
    experiments = [ExperimentRef("1", "Classification"), ExperimentRef("2", "Imputation")]
    defs = build_definitions(config, experiments)
    stall = [s for s in defs.sensors or [] if s.name == SENSOR_NAME]
    assert len(stall) == 1
    (sensor,) = stall
    assert isinstance(sensor, dg.SensorDefinition)
    assert sensor.minimum_interval_seconds == 7
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert "logged nothing for 42 s" in (sensor.description or "")


def test_ui_refuses_a_stall_timeout_not_above_the_heartbeat(tmp_path: Path) -> None:
    code, output = run_cli(
        "ui",
        "--tracking-uri",
        str(tmp_path),
        "--db",
        str(tmp_path / "x.duckdb"),
        "--dagster-home",
        str(tmp_path / "home"),
        "--heartbeat-seconds",
        "60",
        "--stall-timeout-seconds",
        "30",
    )
    assert code == 2 and output.count("\n") == 1, output
    assert "--stall-timeout-seconds (30) must exceed --heartbeat-seconds (60)" in output
    assert not (tmp_path / "home").exists()


# --------------------------------------------------------------------------- the real daemon
def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the daemon, its process group and every descendant (code server, run workers)."""
    family = _descendants(proc.pid)
    stop_process_group(proc, grace_seconds=15)
    for child in family:  # descendants that left the group
        with contextlib.suppress(psutil.Error):
            child.kill()


@contextlib.contextmanager
def running_daemon(
    tmp_path: Path, config: Settings, home: Path
) -> Iterator[subprocess.Popen[bytes]]:
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: mlruns_assets.definitions\n"
        "      location_name: mlruns_assets\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(config.to_env(), DAGSTER_HOME=str(home))
    daemon = Path(sys.executable).with_name("dagster-daemon")
    with (tmp_path / "daemon.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(daemon), "run", "-w", str(workspace)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: code server and workers with it
        )
    try:
        yield proc
    finally:
        _stop(proc)


def _wait_for(what: str, predicate, deadline: float, log: Path):  # noqa: ANN001, ANN202
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1.0)
    pytest.fail(f"timed out waiting for {what}; daemon log:\n{log.read_text()[-6000:]}")


def _sensor_outcome(instance: dg.DagsterInstance, run_id: str, log: Path) -> str:
    """What the stall sensor did to the run's worker (its engine event after the grace wait)."""
    prefix = "stall sensor: "

    def outcome() -> str | None:
        entries = [r.event_log_entry for r in instance.get_records_for_run(run_id).records]
        return next(
            (e.message[len(prefix) :] for e in entries if e.message.startswith(prefix)), None
        )

    return _wait_for("the stall sensor's outcome", outcome, time.monotonic() + 30, log)


def test_daemon_fails_a_hung_run_kills_its_worker_and_keeps_the_other_partitions(
    tmp_path: Path,
) -> None:
    store = write_demo_store(
        tmp_path / "store", backend="sqlite", runs=3, bootstraps=20, imputation_runs=1
    )
    # The last run (by end time) is the last partition of the sensor's one range: the others
    # commit first. Its metrics artifact becomes a FIFO nobody writes to: open() blocks.
    hung = store.good_run_ids[-1]
    (artifact,) = (tmp_path / "store" / "artifacts").glob(
        f"*/{hung}/artifacts/metrics/metrics_*.pickle"
    )
    artifact.unlink()
    os.mkfifo(artifact)
    home = prepare_dagster_home(tmp_path / "home")
    config = Settings(
        tracking_uri=store.tracking_uri,
        database=str(tmp_path / "results.duckdb"),
        subject_map=str(store.subject_map_path),
        heartbeat_seconds=0,
        stall_timeout_seconds=STALL_TIMEOUT,
        stall_sensor_interval_seconds=SENSOR_INTERVAL,
    )
    log = tmp_path / "daemon.log"
    started = time.monotonic()
    deadline = started + DAEMON_DEADLINE
    with running_daemon(tmp_path, config, home), open_instance(home) as instance:

        def original_run() -> dg.DagsterRun | None:
            runs = instance.get_runs(filters=dg.RunsFilter(job_name=JOB))
            return next((r for r in runs if r.parent_run_id is None), None)

        def failed_run() -> dg.DagsterRun | None:
            run = original_run()
            return run if run is not None and run.status == dg.DagsterRunStatus.FAILURE else None

        run = _wait_for("the hung run to be FAILED", failed_run, deadline, log)
        failed_after = time.monotonic() - started
        records = instance.get_records_for_run(run.run_id).records
        entries = [r.event_log_entry for r in records]
        failures = [e for e in entries if e.dagster_event_type == dg.DagsterEventType.RUN_FAILURE]
        progress = [e for e in entries if (e.user_message or "").startswith(PROGRESS_PREFIX)]
        silent_since = progress[-1].timestamp
        detected_in = failures[0].timestamp - silent_since
        print(  # the measured timings, for the record (pytest -s)
            f"\nFAILED {failed_after:.1f} s after the daemon started; {detected_in:.1f} s after "
            f"the worker's last progress line (stall timeout {STALL_TIMEOUT:g} s)"
        )
        message = failures[0].message
        assert f"stalled in partition {hung}:" in message, message
        assert f"last progress: {PROGRESS_PREFIX}" in message and "loading metrics/" in message
        assert detected_in >= STALL_TIMEOUT
        # The stall timeout, one daemon loop (5 s), the kill grace (10 s) and slack for 2 cores.
        assert detected_in <= STALL_TIMEOUT + 5 + 10 + 15, detected_in

        # The worker process is gone: it was blocked in open() on the FIFO.
        worker = parse_worker_tag(run.tags.get(WORKER_TAG))
        assert worker is not None
        _wait_for(
            "the worker process to be gone",
            lambda: live_process(worker) is None,
            time.monotonic() + 15,
            log,
        )
        print("stall sensor:", _sensor_outcome(instance, run.run_id, log))

        # Every other partition is materialized.
        def all_done() -> bool:
            runs = instance.get_runs(filters=dg.RunsFilter(job_name="imputation_extraction_job"))
            return bool(runs) and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)

        _wait_for("the imputation run to succeed", all_done, deadline, log)
        others = set(store.good_run_ids) - {hung}
        for asset in ("runs", "stratos"):
            key = dg.AssetKey(["classification", asset])
            assert instance.get_materialized_partitions(key) == others, asset
        imputation = instance.get_materialized_partitions(dg.AssetKey(["imputation", "runs"]))
        assert imputation == set(store.imputation_run_ids)

        # FAILED, not CANCELED: run_retries (dagster.yaml) retries it once. The retry hangs on
        # the same FIFO; its worker is then frozen (SIGSTOP), as a process in uninterruptible
        # sleep would be: it cannot act on the interrupt, so the sensor must kill it.
        def retry() -> dg.DagsterRun | None:
            runs = instance.get_runs(filters=dg.RunsFilter(job_name=JOB))
            return next((r for r in runs if r.parent_run_id == run.run_id), None)

        retried = _wait_for("the retry of the failed run", retry, deadline, log)
        print(f"retry created {time.monotonic() - started:.1f} s after the daemon started")
        assert retried.tags.get("dagster/retry_number") == "1"

        def hung_retry_worker() -> psutil.Process | None:
            current = instance.get_run_by_id(retried.run_id)
            tagged = parse_worker_tag(current.tags.get(WORKER_TAG)) if current else None
            if tagged is None or tagged.pid == worker.pid:  # still the parent's tag
                return None
            newest = instance.get_records_for_run(retried.run_id, limit=1, ascending=False)
            last = newest.records[0].event_log_entry.user_message if newest.records else ""
            return live_process(tagged) if f"run {hung}: loading metrics/" in last else None

        frozen = _wait_for("the retry to hang on the FIFO", hung_retry_worker, deadline, log)
        print(f"retry hung {time.monotonic() - started:.1f} s after the daemon started")
        frozen.suspend()
        frozen_at = time.time()

        def retry_failed() -> dg.DagsterRun | None:
            current = instance.get_run_by_id(retried.run_id)
            return current if current and current.status == dg.DagsterRunStatus.FAILURE else None

        _wait_for("the frozen retry to be FAILED", retry_failed, deadline, log)
        outcome = _sensor_outcome(instance, retried.run_id, log)
        assert outcome == f"killed worker pid(s) {frozen.pid} (ignored the interrupt)", outcome
        entries = [r.event_log_entry for r in instance.get_records_for_run(retried.run_id).records]
        (failure,) = [e for e in entries if e.dagster_event_type == dg.DagsterEventType.RUN_FAILURE]
        assert f"stalled in partition {hung}:" in failure.message
        _wait_for(
            "the frozen worker to be gone",
            lambda: (
                live_process(parse_worker_tag(retried.tags[WORKER_TAG]) or worker) is None
                and not (frozen.is_running() and frozen.status() != psutil.STATUS_ZOMBIE)
            ),
            time.monotonic() + 15,
            log,
        )
        print(
            f"retry FAILED {failure.timestamp - frozen_at:.1f} s after its worker froze; "
            f"{time.monotonic() - started:.1f} s after the daemon started"
        )
        # With the retries spent, the hung partition shows as failed: "backfill failed
        # partitions" in the UI picks it up. Its rows were never written.
        for asset in ("runs", "stratos"):
            key = dg.AssetKey(["classification", asset])
            status = instance.get_status_by_partition(
                key, [hung], dg.DynamicPartitionsDefinition(name="classification_runs")
            )
            assert status == {hung: dg.AssetPartitionStatus.FAILED}, asset
