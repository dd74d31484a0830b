"""Scale-out figures (issue #17) on a loopback Postgres started by deploy/loopback.py.

- Dagster event cost: ``report_engine_event`` per event on Dagster's stock SQLite storage, on
  the project's kept-connection SQLite storage (mlruns_assets/dagster.yaml, the single-machine
  default) and on Postgres storage (deploy/dagster.yaml's storage).
- Partition-status query time at 10,000 and 50,000 dynamic partitions, every one materialized
  (written with the Postgres event log's batch insert): ``get_materialized_partitions`` and the
  UI's partition status (``get_and_update_asset_status_cache_value``), cold and cached.
- With ``--throughput``: the loopback deployment (deploy/loopback.py e2e, no fault, figures
  sensor paused) with one Celery worker, then two; extraction runs' span (first start to last
  end) and the ratio. Each takes a few minutes.

Usage: ``uv run python benchmarks/distributed.py [--throughput] --out
benchmarks/results/distributed.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "deploy"))
from loopback import running_stack  # noqa: E402

PROJECT_INSTANCE = REPO / "mlruns_assets" / "dagster.yaml"


def postgres_instance(home: Path, port: int, db: str) -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(
        "storage:\n  postgres:\n    postgres_db:\n      scheme: postgresql+psycopg2\n"
        f"      hostname: 127.0.0.1\n      port: {port}\n      username: postgres\n"
        f"      password: ''\n      db_name: {db}\ntelemetry:\n  enabled: false\n"
    )
    return dg.DagsterInstance.from_config(str(home))


def sqlite_instance(home: Path, *, kept: bool) -> dg.DagsterInstance:
    """The project's instance (kept connections) or Dagster's stock SQLite storage."""
    home.mkdir(parents=True, exist_ok=True)
    config = PROJECT_INSTANCE.read_text() if kept else "telemetry:\n  enabled: false\n"
    (home / "dagster.yaml").write_text(config)
    return dg.DagsterInstance.from_config(str(home))


def event_cost(instance: dg.DagsterInstance, n: int) -> dict[str, float]:
    """Seconds per ``report_engine_event`` (what every progress line and step event costs)."""
    run = instance.run_storage.add_run(dg.DagsterRun(job_name="bench", run_id=str(uuid.uuid4())))
    times = []
    for i in range(n):
        started = time.perf_counter()
        instance.report_engine_event(f"event {i}", run)
        times.append(time.perf_counter() - started)
    return {
        "events": n,
        "median_ms": statistics.median(times) * 1e3,
        "p90_ms": sorted(times)[int(n * 0.9)] * 1e3,
        "mean_ms": statistics.fmean(times) * 1e3,
    }


def materialization(key: dg.AssetKey, partition: str, run_id: str) -> EventLogEntry:
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name="bench",
        event_specific_data=StepMaterializationData(
            dg.AssetMaterialization(asset_key=key, partition=partition)
        ),
    )
    return EventLogEntry(
        error_info=None,
        level=logging.DEBUG,
        user_message="",
        run_id=run_id,
        timestamp=time.time(),
        dagster_event=event,
    )


def partition_status(instance: dg.DagsterInstance, n: int, batch: int = 1000) -> dict[str, Any]:
    """Time to add ``n`` partitions, write one materialization each, then query the status."""
    name = f"bench_{n}"
    key = dg.AssetKey(["bench", f"asset_{n}"])
    partitions_def = dg.DynamicPartitionsDefinition(name=name)
    keys = [uuid.uuid4().hex for _ in range(n)]
    started = time.perf_counter()
    instance.add_dynamic_partitions(name, keys)
    add_s = time.perf_counter() - started
    run_id = str(uuid.uuid4())
    started = time.perf_counter()
    for i in range(0, n, batch):
        instance.event_log_storage.store_event_batch(
            [materialization(key, k, run_id) for k in keys[i : i + batch]]
        )
    write_s = time.perf_counter() - started

    def timed(fn: Any) -> tuple[float, Any]:
        t = time.perf_counter()
        value = fn()
        return time.perf_counter() - t, value

    materialized_s, materialized = timed(lambda: instance.get_materialized_partitions(key))
    assert len(materialized) == n, len(materialized)
    cold_s, _ = timed(
        lambda: get_and_update_asset_status_cache_value(instance, key, partitions_def)
    )
    warm_s, value = timed(
        lambda: get_and_update_asset_status_cache_value(instance, key, partitions_def)
    )
    instance.event_log_storage.store_event_batch([materialization(key, keys[0], run_id)])
    incremental_s, _ = timed(
        lambda: get_and_update_asset_status_cache_value(instance, key, partitions_def)
    )
    return {
        "partitions": n,
        "add_partitions_s": add_s,
        "write_materializations_s": write_s,
        "get_materialized_partitions_s": materialized_s,
        "status_cold_s": cold_s,
        "status_cached_s": warm_s,
        "status_after_one_new_event_s": incremental_s,
        "cached_value_ok": value is not None,
    }


def throughput(runs: int, experiments: int) -> dict[str, Any]:
    """The loopback deployment with 1 then 2 Celery workers: extraction runs' span and ratio."""
    report: dict[str, Any] = {"runs_per_experiment": runs, "experiments": experiments}
    for workers in (1, 2):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            cmd = [sys.executable, str(REPO / "deploy" / "loopback.py"), "e2e",
                   "--runs", str(runs), "--experiments", str(experiments), "--kill-after", "0",
                   "--workers", str(workers), "--pause-figures", "--json", out.name]  # fmt: skip
            load = os.getloadavg()
            done = subprocess.run(cmd, capture_output=True, text=True)
            figures = json.loads(Path(out.name).read_text() or "{}")
        if done.returncode != 0:
            raise SystemExit(f"loopback with {workers} worker(s) failed: {done.stdout[-500:]}")
        report[f"workers_{workers}"] = {
            "partitions": figures["partitions"],
            "runs_span_s": figures["runs_span_s"],
            "partitions_per_s": figures["partitions_per_s"],
            "run_seconds_sum": figures["run_seconds_sum"],
            "loadavg_before": load,
        }
    report["ratio"] = report["workers_1"]["runs_span_s"] / report["workers_2"]["runs_span_s"]
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--partitions", type=int, nargs="*", default=[10_000, 50_000])
    parser.add_argument("--throughput", action="store_true", help="also 1 vs 2 Celery workers")
    parser.add_argument("--throughput-runs", type=int, default=30)
    parser.add_argument("--throughput-experiments", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report: dict[str, Any] = {"loadavg_before": os.getloadavg()}
    workdir = Path(tempfile.mkdtemp(prefix="mlruns-assets-bench-"))
    with running_stack(workdir) as stack:
        stack.start_postgres()
        port = stack.ports["postgres"]
        with sqlite_instance(workdir / "stock_home", kept=False) as stock:
            report["event_cost_sqlite_stock"] = event_cost(stock, args.events)
        with sqlite_instance(workdir / "sqlite_home", kept=True) as sqlite:
            report["event_cost_sqlite_kept"] = event_cost(sqlite, args.events)
        with postgres_instance(workdir / "pg_home", port, "dagster") as pg:
            report["event_cost_postgres"] = event_cost(pg, args.events)
            report["partition_status_postgres"] = [partition_status(pg, n) for n in args.partitions]
    if args.throughput:
        report["throughput_celery"] = throughput(args.throughput_runs, args.throughput_experiments)
    report["loadavg_after"] = os.getloadavg()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
