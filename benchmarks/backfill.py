"""Variant (d) of the benchmark: a backfill of every partition, launched the way the UI does.

A temporary DAGSTER_HOME gets the project's ``dagster.yaml`` and a ``workspace.yaml`` that loads
``mlruns_assets.definitions`` (configured through ``Settings.to_env()``). The experiment's
eligible runs are added as partitions (``plan_discovery``, as ``extract`` and the sensor do).
Then ``dagster-webserver`` and ``dagster-daemon run`` start, each in its own process group;
the discovery sensor is stopped through the UI's ``StopSensor`` mutation (otherwise it would
request runs itself); and the backfill is launched with the UI's ``LaunchPartitionBackfill``
mutation (asset selection + partition names + the ``dagster/from_ui`` tag, as the asset
partitions dialog sends it). The daemon's backfill and queued-run daemons turn it into range runs
(``BackfillPolicy.multi_run``), which run in worker processes under the daemon's code server.

Timed from the mutation until every partition of every table asset is materialized; the
daemon's process tree (daemon, its code server, run workers) is sampled throughout.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dagster as dg
from measure import MB, TreeSampler, start_group, stop_group

from mlruns_assets.defs.partitions import partitions_def_name
from mlruns_assets.runtime.instance import open_instance, prepare_dagster_home
from mlruns_assets.runtime.settings import Kind, Settings
from mlruns_assets.source.discovery import plan_discovery
from mlruns_assets.source.tracking import TrackingStore
from mlruns_assets.warehouse.catalog import assets_for_kind

LOCATION = "mlruns_assets"
REPOSITORY = "__repository__"  # the repository name of a Definitions object
# A run worker: launched by the code server through multiprocessing (Dagster 1.13), or as
# ``dagster api execute_run`` by other run launchers.
WORKER_MARKERS = ("multiprocessing.spawn", "execute_run")
TERMINAL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}

LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}"""
BACKFILL_STATUS = """
query BackfillStatus($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill { status numPartitions }
    ... on PythonError { message }
  }
}"""
SENSOR = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { id sensorState { status } }
  }
}"""
STOP_SENSOR = """
mutation StopSensor($id: String!) {
  stopSensor(id: $id) {
    __typename
    ... on StopSensorMutationResult { instigationState { status } }
    ... on PythonError { message }
  }
}"""
LOCATIONS = """
query { workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
DAEMONS = """
query { instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"""


class BackfillError(RuntimeError):
    """The backfill could not be launched or did not finish."""


@dataclass(frozen=True)
class GraphQL:
    url: str

    def __call__(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise BackfillError(f"GraphQL errors: {payload['errors']}")
        return dict(payload["data"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(what: str, ready: Any, timeout_s: float, proc: Any, log: Path) -> float:
    """Poll ``ready()`` until true; seconds waited. Fails early if ``proc`` exits."""
    started = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise BackfillError(
                f"{what}: process exited {proc.returncode}: {log.read_text()[-3000:]}"
            )
        try:
            if ready():
                return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if time.monotonic() - started > timeout_s:
            raise BackfillError(
                f"{what}: not ready after {timeout_s:.0f} s: {log.read_text()[-3000:]}"
            )
        time.sleep(0.5)


def run_backfill(
    config: Settings,
    experiment_name: str,
    workdir: Path,
    *,
    timeout_s: float = 3600.0,
) -> dict[str, Any]:
    """Run variant (d); returns its measurements (see the module docstring)."""
    workdir.mkdir(parents=True, exist_ok=True)
    home = prepare_dagster_home(workdir / "dagster_home")
    workspace = workdir / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n      module_name: mlruns_assets.definitions\n"
        f"      location_name: {LOCATION}\n"
    )
    store = TrackingStore(config.tracking_uri)
    (experiment,) = store.experiments([experiment_name])
    keys = [dg.AssetKey([experiment.slug, a.name]) for a in assets_for_kind(Kind.CLASSIFICATION)]
    with open_instance(home) as instance:
        plan = plan_discovery(store, experiment, set(), batch_size=10**9)
        instance.add_dynamic_partitions(partitions_def_name(experiment), plan.to_add)
    partition_keys = list(plan.to_add)

    # The figures sensor would draw curves during the measurement, competing for the cores,
    # the run queue and the database lock: the backfill is timed alone.
    figures_paused = replace(config, pause_figures=True)
    env = {**os.environ, **figures_paused.to_env(), "DAGSTER_HOME": str(home)}
    bin_dir = Path(sys.executable).parent
    port = _free_port()
    gql = GraphQL(f"http://127.0.0.1:{port}/graphql")
    web_log, daemon_log = workdir / "webserver.log", workdir / "daemon.log"
    startup: dict[str, float] = {}
    web = start_group(
        [str(bin_dir / "dagster-webserver"), "-w", str(workspace), "-h", "127.0.0.1",
         "-p", str(port)],
        env=env, cwd=workdir, log=web_log,
    )  # fmt: skip
    daemon = None
    try:

        def location_loaded() -> bool:
            entries = gql(LOCATIONS)["workspaceOrError"].get("locationEntries", [])
            for entry in entries:
                error = entry["locationOrLoadError"]
                if error and error["__typename"] == "PythonError":
                    raise BackfillError(f"code location failed to load: {error['message']}")
            return any(e["loadStatus"] == "LOADED" for e in entries)

        startup["webserver_s"] = _wait("webserver", location_loaded, 300, web, web_log)
        sensor_name = f"{experiment.slug}_discovery_sensor"
        selector = {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "sensorName": sensor_name,
        }
        sensor = gql(SENSOR, {"selector": selector})["sensorOrError"]
        if sensor["__typename"] != "Sensor":
            raise BackfillError(f"sensor {sensor_name} not found: {sensor}")
        stopped = gql(STOP_SENSOR, {"id": sensor["id"]})["stopSensor"]
        if stopped["__typename"] != "StopSensorMutationResult":
            raise BackfillError(f"could not stop {sensor_name}: {stopped}")

        daemon = start_group(
            [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)],
            env=env,
            cwd=workdir,
            log=daemon_log,
        )
        needed = {"BACKFILL", "QUEUED_RUN_COORDINATOR"}

        def daemons_healthy() -> bool:
            statuses = gql(DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
            return needed <= {s["daemonType"] for s in statuses if s["healthy"]}

        startup["daemon_s"] = _wait("daemon", daemons_healthy, 300, daemon, daemon_log)
        sampler = TreeSampler(daemon.pid, interval_s=0.1)
        idle_rss = sampler.idle_rss(2.0)
        idle_cpu = sum(sampler.cpu_by_pid.values())
        sampler.start()

        started, launched_epoch = time.perf_counter(), time.time()
        launched = gql(
            LAUNCH_BACKFILL,
            {
                "backfillParams": {
                    "tags": [{"key": "dagster/from_ui", "value": "true"}],
                    "assetSelection": [{"path": key.path} for key in keys],
                    "partitionNames": partition_keys,
                    "fromFailure": False,
                }
            },
        )["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise BackfillError(f"launch failed: {launched}")
        backfill_id = launched["backfillId"]
        materialized_at = completed_at = None
        status = "REQUESTED"
        with open_instance(home) as instance:
            while completed_at is None or materialized_at is None:
                if time.perf_counter() - started > timeout_s:
                    raise BackfillError(
                        f"backfill {backfill_id} still {status} after {timeout_s} s"
                    )
                if daemon.poll() is not None:
                    raise BackfillError(f"daemon exited: {daemon_log.read_text()[-3000:]}")
                if materialized_at is None:
                    counts = [len(instance.get_materialized_partitions(k)) for k in keys]
                    if min(counts) >= len(partition_keys):
                        materialized_at = time.perf_counter() - started
                if completed_at is None:
                    result = gql(BACKFILL_STATUS, {"backfillId": backfill_id})
                    status = result["partitionBackfillOrError"].get("status", "?")
                    if status in TERMINAL:
                        completed_at = time.perf_counter() - started
                        if materialized_at is None:
                            counts = [len(instance.get_materialized_partitions(k)) for k in keys]
                            if min(counts) < len(partition_keys):
                                raise BackfillError(
                                    f"backfill {backfill_id} ended {status} with only "
                                    f"{min(counts)}/{len(partition_keys)} partitions materialized"
                                )
                time.sleep(0.5)
            sampler.stop()
            runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
            spans = [(r.start_time, r.end_time) for r in runs if r.start_time and r.end_time]
            # Per run, seconds after the launch: queued by the backfill daemon, started, ended.
            timeline = sorted(
                (
                    [
                        round(r.create_timestamp.timestamp() - launched_epoch, 1),
                        round(r.start_time - launched_epoch, 1) if r.start_time else None,
                        round(r.end_time - launched_epoch, 1) if r.end_time else None,
                    ]
                    for r in runs
                ),
                key=lambda times: times[0],  # a run never started has no start time
            )
            statuses = sorted({r.dagster_run.status.value for r in runs})
    finally:
        if daemon is not None:
            stop_group(daemon)
        stop_group(web)

    workers = {
        pid: hwm
        for pid, hwm in sampler.hwm_by_pid.items()
        if any(m in sampler.cmdline_by_pid.get(pid, "") for m in WORKER_MARKERS)
    }
    first_start = min(s for s, _ in spans) if spans else None
    return {
        "backfill_id": backfill_id,
        "partitions": len(partition_keys),
        "status": status,
        "wall_s": materialized_at,
        "backfill_completed_s": completed_at,
        "runs": len(runs),
        "run_statuses": statuses,
        "run_seconds_sum": sum(e - s for s, e in spans),
        "first_run_started_after_s": first_start - launched_epoch if first_start else None,
        "run_timeline_s": timeline,
        "startup_s": startup,
        "tree_idle_rss_mb": idle_rss / MB,
        "tree_peak_rss_mb": sampler.peak_sum_bytes / MB,
        "tree_peak_above_idle_mb": (sampler.peak_sum_bytes - idle_rss) / MB,
        "worker_peak_rss_mb": max(workers.values()) / MB if workers else None,
        "worker_processes": len(workers),
        "tree_cpu_s": sum(sampler.cpu_by_pid.values()) - idle_cpu,
        "samples": sampler.samples,
        "processes": [
            {
                "cmd": sampler.cmdline_by_pid.get(pid, "?")[:160],
                "peak_rss_mb": hwm / MB,
                "cpu_s": sampler.cpu_by_pid.get(pid, 0.0),
            }
            for pid, hwm in sorted(sampler.hwm_by_pid.items())
        ],
    }
