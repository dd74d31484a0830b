"""The stall sensor under a real ``dagster-daemon``, with a run whose metrics artifact is a FIFO,
so that reading it blocks forever; and ``mlruns-assets ui`` refusing a stall timeout it cannot
honour.

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

from mlruns_assets.demo.store import write_demo_store
from mlruns_assets.runtime.instance import open_instance, prepare_dagster_home
from mlruns_assets.runtime.progress import PROGRESS_PREFIX
from mlruns_assets.runtime.settings import ENV_PREFIX, Settings
from mlruns_assets.runtime.worker import WORKER_TAG, live_process, parse_worker_tag
from mlruns_assets_tests.support.cli import run_cli
from mlruns_assets_tests.support.processes import stop_process_group

# Healthy steps here log at least every 0.4 s (measured under load, heartbeat 0); the 10-15 s
# launch happens before RUN_START, while the run is not yet STARTED (not watched).
STALL_TIMEOUT = 8.0
SENSOR_INTERVAL = 1  # the daemon looks at most every 5 s anyway
DAEMON_DEADLINE = 150.0
JOB = "classification_extraction_job"


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
