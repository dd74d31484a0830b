"""The stall sensor under a real ``dagster-daemon``, with runs whose metrics artifact is a FIFO,
so that reading it blocks forever (or delivers slowly, fed by a thread); and ``mlruns-assets ui``
refusing a stall timeout it cannot honour.

Hung runs are launched every way there is: by the discovery sensor (the extraction job), and
from the asset page through the web server's GraphQL API, as a partition backfill and as
"Materialize" (both run as ``__ASSET_JOB``). A slow read that keeps delivering bytes is left
alone. The daemon tests configure short timeouts (stall timeout, sensor interval) through the
project configuration, the way ``mlruns-assets ui`` passes them, not by sleeping for minutes;
they print the measured detection times and the sensor's tick cadence (pytest -s)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import dagster as dg
import psutil
import pytest

from mlruns_assets.defs.stall_sensor import SENSOR_NAME
from mlruns_assets.demo.store import DemoStore, write_demo_store
from mlruns_assets.runtime.instance import open_instance, prepare_dagster_home
from mlruns_assets.runtime.progress import PROGRESS_PREFIX
from mlruns_assets.runtime.settings import ENV_PREFIX, Settings
from mlruns_assets.runtime.worker import WORKER_TAG, live_process, parse_worker_tag
from mlruns_assets.source.partition_keys import run_id_of
from mlruns_assets_tests.support.cli import run_cli
from mlruns_assets_tests.support.partitions import key_of
from mlruns_assets_tests.support.processes import free_port, stop_process_group
from mlruns_assets_tests.support.webserver import clean_environ, graphql, wait_until_loaded

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


def _workspace(tmp_path: Path) -> Path:
    """The workspace the daemon (and the web server) load: one code location, named as the
    runs they launch record it."""
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: mlruns_assets.definitions\n"
        "      location_name: mlruns_assets\n"
    )
    return workspace


@contextlib.contextmanager
def running_daemon(
    tmp_path: Path, config: Settings, home: Path
) -> Iterator[subprocess.Popen[bytes]]:
    workspace = _workspace(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    # The figures sensor's runs (curves, leaderboard) would wait on the database lock a hung
    # extraction holds and take places in the run queue: not what these tests watch.
    env.update(replace(config, pause_figures=True).to_env(), DAGSTER_HOME=str(home))
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
        hung_key = key_of(instance, "classification_runs", hung)  # carries the run's name
        assert f"stalled in partition {hung_key}:" in message, message
        assert f"s earlier): {PROGRESS_PREFIX}" in message and "loading metrics/" in message
        assert f"committed {len(store.good_run_ids) - 1} of {len(store.good_run_ids)} " in message
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
            assert set(map(run_id_of, instance.get_materialized_partitions(key))) == others, asset
        imputation = instance.get_materialized_partitions(dg.AssetKey(["imputation", "runs"]))
        assert set(map(run_id_of, imputation)) == set(store.imputation_run_ids)

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
        assert f"stalled in partition {hung_key}:" in failure.message
        # The retry resumed from the failure: it kept what the failed run had committed.
        kept = f"{len(others)} partitions it committed are kept, 1 to extract"
        assert any(kept in (e.user_message or "") for e in entries), kept
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
                key, [hung_key], dg.DynamicPartitionsDefinition(name="classification_runs")
            )
            assert status == {hung_key: dg.AssetPartitionStatus.FAILED}, asset
        ticks = _stall_sensor_ticks(instance)
        print(f"stall sensor ticks every {_cadence(ticks)} s (interval {SENSOR_INTERVAL} s)")


# --------------------------------------------------------------------------- every launch path
# The settings a user would pick, scaled down: a heartbeat well below the stall timeout, the
# sensor looking every 5 s (the daemon's sensor loop runs every 5 s: MIN_INTERVAL_LOOP_TIME).
UI_HEARTBEAT = 2.0
UI_STALL_TIMEOUT = 8.0
UI_SENSOR_INTERVAL = 5
DAEMON_LOOP = 5.0  # dagster's sensor daemon evaluates sensors at most once per loop of 5 s
LOCATION = "mlruns_assets"
REPOSITORY = "__repository__"
ASSETS = ("runs", "stratos")
PARTITION = "dagster/partition"


def _metrics_artifact(tmp_path: Path, run_id: str) -> Path:
    (artifact,) = (tmp_path / "store" / "artifacts").glob(
        f"*/{run_id}/artifacts/metrics/metrics_*.pickle"
    )
    return artifact


def _ui_settings(store: DemoStore, tmp_path: Path) -> Settings:
    return Settings(
        tracking_uri=store.tracking_uri,
        database=str(tmp_path / "results.duckdb"),
        subject_map=str(store.subject_map_path),
        heartbeat_seconds=UI_HEARTBEAT,
        stall_timeout_seconds=UI_STALL_TIMEOUT,
        stall_sensor_interval_seconds=UI_SENSOR_INTERVAL,
    )


def _stall_sensor_ticks(instance: dg.DagsterInstance) -> list[tuple[float, str]]:
    """(start time, status) of every tick of the stall sensor so far, oldest first."""
    states = [s for s in instance.all_instigator_state() if s.instigator_name == SENSOR_NAME]
    ticks = [
        (tick.timestamp, tick.status.value)
        for state in states
        for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1000)
    ]
    return sorted(ticks)


def _cadence(ticks: list[tuple[float, str]]) -> list[float]:
    return [round(b[0] - a[0], 1) for a, b in zip(ticks, ticks[1:], strict=False)]


def _detection(instance: dg.DagsterInstance, run_id: str) -> tuple[str, float]:
    """The run's failure message, and how long after its last event before it the failure was
    recorded (what the sensor measures: silence, then the next tick that sees it)."""
    entries = [r.event_log_entry for r in instance.get_records_for_run(run_id).records]
    index = next(
        i for i, e in enumerate(entries) if e.dagster_event_type == dg.DagsterEventType.RUN_FAILURE
    )
    return entries[index].message, entries[index].timestamp - entries[index - 1].timestamp


@contextlib.contextmanager
def running_webserver(tmp_path: Path, config: Settings, home: Path) -> Iterator[int]:
    """``dagster-webserver`` on the daemon's workspace (so the runs it queues name the code
    location the daemon knows); yields its port once the location has loaded."""
    port = free_port()
    log = tmp_path / "webserver.log"
    env = clean_environ(**config.to_env(), DAGSTER_HOME=str(home))
    server = Path(sys.executable).with_name("dagster-webserver")
    cmd = [str(server), "-w", str(_workspace(tmp_path)), "-h", "127.0.0.1", "-p", str(port)]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            cmd, env=env, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_until_loaded(proc, port, log)
        yield port
    finally:
        _stop(proc)


def _gql_list(items: list[dict[str, object]]) -> str:
    """A GraphQL input list of objects (keys unquoted), from JSON-able dicts."""

    def value(v: object) -> str:
        return json.dumps(v)

    return (
        "["
        + ", ".join(
            "{" + ", ".join(f"{k}: {value(v)}" for k, v in item.items()) + "}" for item in items
        )
        + "]"
    )


def _launch_backfill(port: int, keys: list[str], tags: dict[str, str]) -> str:
    """The asset page's "Materialize" over several partitions: a partition backfill of the
    extraction assets, as the UI's LaunchPartitionBackfill mutation sends it."""
    selection = _gql_list([{"path": ["classification", a]} for a in ASSETS])
    tag_list = _gql_list([{"key": k, "value": v} for k, v in tags.items()])
    result = graphql(
        port,
        "mutation { launchPartitionBackfill(backfillParams: {"
        f"assetSelection: {selection}, partitionNames: {json.dumps(keys)}, "
        f"fromFailure: false, tags: {tag_list}"
        "}) { __typename ... on LaunchBackfillSuccess { backfillId } "
        "... on PythonError { message } ... on PartitionKeysNotFoundError { message } } }",
    )["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return str(result["backfillId"])


def _launch_materialize(port: int, key: str, tags: dict[str, str]) -> str:
    """The asset page's "Materialize" of one partition: a run of the implicit asset job with
    the partition's tag, queued by the run coordinator (the daemon launches it)."""
    selection = _gql_list([{"path": ["classification", a]} for a in ASSETS])
    tag_list = _gql_list([{"key": k, "value": v} for k, v in {**tags, PARTITION: key}.items()])
    result = graphql(
        port,
        "mutation { launchRun(executionParams: {selector: {"
        f'repositoryLocationName: "{LOCATION}", repositoryName: "{REPOSITORY}", '
        f'jobName: "__ASSET_JOB", assetSelection: {selection}}}, '
        f"executionMetadata: {{tags: {tag_list}}}"
        "}) { __typename ... on LaunchRunSuccess { run { runId } } "
        "... on PythonError { message } ... on RunConfigValidationInvalid { errors { message } } "
        "... on InvalidSubsetError { message } } }",
    )["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return str(result["run"]["runId"])


def test_daemon_fails_hung_runs_launched_from_the_asset_page(tmp_path: Path) -> None:
    """A partition backfill and a "Materialize" of the extraction assets from the UI run as
    ``__ASSET_JOB``: each hung run is FAILED within the stall timeout, one sensor interval and
    the daemon's loop delay, its worker is gone and its partition shows failed; the partition
    the backfill committed before the hang stays materialized."""
    store = write_demo_store(
        tmp_path / "store", backend="sqlite", runs=3, bootstraps=20, imputation_runs=0
    )
    good, hung_backfill, hung_materialize = store.good_run_ids  # in partition order
    for run_id in (hung_backfill, hung_materialize):
        artifact = _metrics_artifact(tmp_path, run_id)
        artifact.unlink()
        os.mkfifo(artifact)  # nobody writes: open() blocks for good
    home = prepare_dagster_home(tmp_path / "home")
    config = _ui_settings(store, tmp_path)
    with open_instance(home) as instance:
        # Known partitions: the discovery sensor requests no run of its own.
        instance.add_dynamic_partitions("classification_runs", store.good_run_ids)
    no_retry = {"dagster/from_ui": "true", "dagster/max_retries": "0"}
    started = time.monotonic()
    with running_webserver(tmp_path, config, home) as port:
        backfill_id = _launch_backfill(port, [good, hung_backfill], no_retry)
        materialize_id = _launch_materialize(port, hung_materialize, no_retry)
    print(f"\nlaunched from the UI {time.monotonic() - started:.1f} s after the start")
    log = tmp_path / "daemon.log"
    deadline = time.monotonic() + DAEMON_DEADLINE
    with running_daemon(tmp_path, config, home), open_instance(home) as instance:

        def backfill_run() -> dg.DagsterRun | None:
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
            return runs[0] if runs else None

        def both_failed() -> list[dg.DagsterRun] | None:
            runs = [backfill_run(), instance.get_run_by_id(materialize_id)]
            done = [r for r in runs if r is not None and r.status == dg.DagsterRunStatus.FAILURE]
            return done if len(done) == 2 else None

        failed = _wait_for("both hung runs to be FAILED", both_failed, deadline, log)
        print(f"both FAILED {time.monotonic() - started:.1f} s after the start")
        # Silent for the timeout, then seen by the next tick: ticks come every interval rounded
        # up to the daemon's loop (5 s), and a 5 s interval often waits one loop more (5-10 s).
        # Plus the tick's own evaluation and slack for 2 loaded cores.
        bound = UI_STALL_TIMEOUT + UI_SENSOR_INTERVAL + DAEMON_LOOP + 3
        for run, hung, committed in zip(
            failed, (hung_backfill, hung_materialize), ("1 of 2", "0 of 1"), strict=True
        ):
            assert run.job_name == "__ASSET_JOB", run.job_name
            message, detected_in = _detection(instance, run.run_id)
            how = "backfill" if run.run_id != materialize_id else "materialize"
            print(f"{how}: FAILED {detected_in:.1f} s after its last event: {message}")
            assert f"stalled in partition {hung}:" in message, message
            assert f"committed {committed} partitions" in message, message
            assert f"run {hung}: loading metrics/" in message, message
            assert UI_STALL_TIMEOUT <= detected_in <= bound, (detected_in, bound)
            worker = parse_worker_tag(run.tags.get(WORKER_TAG))
            assert worker is not None
            _wait_for(
                f"the {how} worker to be gone",
                lambda w=worker: live_process(w) is None,
                time.monotonic() + 15,
                log,
            )
            print(f"{how}: stall sensor: {_sensor_outcome(instance, run.run_id, log)}")
        # The hung partitions show failed (no retry asked), the one committed first does not.
        partitions = dg.DynamicPartitionsDefinition(name="classification_runs")
        for asset in ASSETS:
            status = instance.get_status_by_partition(
                dg.AssetKey(["classification", asset]), store.good_run_ids, partitions
            )
            assert status == {
                good: dg.AssetPartitionStatus.MATERIALIZED,
                hung_backfill: dg.AssetPartitionStatus.FAILED,
                hung_materialize: dg.AssetPartitionStatus.FAILED,
            }, (asset, status)
        ticks = _stall_sensor_ticks(instance)
        print(f"stall sensor ticks every {_cadence(ticks)} s (interval {UI_SENSOR_INTERVAL} s)")


def test_daemon_leaves_a_slow_but_progressing_read_alone(tmp_path: Path) -> None:
    """A metrics artifact that arrives slowly (a FIFO fed by a thread for longer than the stall
    timeout plus a sensor interval) keeps its run alive: the read reports its bytes, the sensor
    ticks through it and leaves it alone, and the run succeeds. Measures the sensor's cadence."""
    store = write_demo_store(
        tmp_path / "store", backend="sqlite", runs=2, bootstraps=20, imputation_runs=0
    )
    slow = store.good_run_ids[-1]
    artifact = _metrics_artifact(tmp_path, slow)
    data = artifact.read_bytes()
    artifact.unlink()
    os.mkfifo(artifact)
    feed_seconds = UI_STALL_TIMEOUT + UI_SENSOR_INTERVAL + DAEMON_LOOP + 6  # 24 s
    pieces = 48
    fed: dict[str, float] = {}

    def feed() -> None:
        with artifact.open("wb", buffering=0) as sink:  # blocks until the worker opens it
            fed["opened"] = time.time()
            step = -(-len(data) // pieces)
            for start in range(0, len(data), step):
                sink.write(data[start : start + step])
                time.sleep(feed_seconds / pieces)
            fed["closed"] = time.time()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    home = prepare_dagster_home(tmp_path / "home")
    log = tmp_path / "daemon.log"
    deadline = time.monotonic() + DAEMON_DEADLINE
    try:
        with (
            running_daemon(tmp_path, _ui_settings(store, tmp_path), home),
            open_instance(home) as instance,
        ):

            def finished() -> dg.DagsterRun | None:
                runs = instance.get_runs(filters=dg.RunsFilter(job_name=JOB))
                done = [r for r in runs if r.is_finished]
                return done[0] if done else None

            run = _wait_for("the slow run to finish", finished, deadline, log)
            ticks = _stall_sensor_ticks(instance)
            entries = [r.event_log_entry for r in instance.get_records_for_run(run.run_id).records]
    finally:
        if feeder.is_alive():  # the worker never opened it: release the writer
            with contextlib.suppress(OSError):
                os.close(os.open(artifact, os.O_RDONLY | os.O_NONBLOCK))
    failures = [
        e.message for e in entries if e.dagster_event_type == dg.DagsterEventType.RUN_FAILURE
    ]
    assert run.status == dg.DagsterRunStatus.SUCCESS, failures
    opened, closed = fed["opened"], fed["closed"]
    took = closed - opened
    assert took >= UI_STALL_TIMEOUT + UI_SENSOR_INTERVAL, took
    during = [e for e in entries if opened <= e.timestamp <= closed + 1]
    reads = [e.user_message for e in during if f"run {slow}: reading metrics/" in e.user_message]
    assert len(reads) >= 4, [e.user_message for e in during]
    times = [opened] + [e.timestamp for e in during] + [closed]
    longest_silence = max(b - a for a, b in zip(times, times[1:], strict=False))
    looked = [t for t, status in ticks if opened + UI_STALL_TIMEOUT <= t <= closed]
    print(
        f"\nread of {len(data) / 1e3:.0f} kB took {took:.1f} s; {len(reads)} reading lines, "
        f"longest silence {longest_silence:.1f} s (stall timeout {UI_STALL_TIMEOUT:g} s); "
        f"{len(looked)} sensor ticks past the timeout left it alone; last: {reads[-1]}"
    )
    assert longest_silence < UI_STALL_TIMEOUT
    assert looked, ticks  # the sensor did look while the read was older than the timeout
    for asset in ASSETS:
        key = dg.AssetKey(["classification", asset])
        with open_instance(home) as instance:
            materialized = instance.get_materialized_partitions(key)
            assert set(map(run_id_of, materialized)) == set(store.good_run_ids)

    # The cadence: the daemon evaluates sensors once per 5 s loop and skips a sensor whose
    # interval has not fully elapsed, so a 5 s interval ticks every 5 or 10 s.
    gaps = _cadence(ticks)
    print(
        f"stall sensor ticks: {len(ticks)}, every {gaps} s (interval {UI_SENSOR_INTERVAL} s): "
        f"min {min(gaps)}, median {sorted(gaps)[len(gaps) // 2]}, max {max(gaps)}"
    )
    # Every finished tick left the run alone (the newest may still be in progress).
    assert all(status == "SKIPPED" for _, status in ticks[:-1]), ticks
    assert ticks[-1][1] in ("SKIPPED", "STARTED"), ticks
    assert min(gaps) >= UI_SENSOR_INTERVAL - 0.5
    assert max(gaps) <= UI_SENSOR_INTERVAL + DAEMON_LOOP + 3
