"""Crash safety on real processes: ``kill -9`` of ``mlruns-assets extract`` at seeded-random
moments mid-extraction, then a rerun; and two processes writing different partitions of one
DuckDB file at once. Every partition must end up present exactly once in every table (never
partial, never duplicated), and the Dagster instance must agree with the database.

Row counts are compared, per table and per MLflow run, with a reference extraction of the same
store that was never interrupted."""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from mlruns_assets.demo.store import DemoStore, write_demo_store
from mlruns_assets.runtime.instance import open_instance
from mlruns_assets.runtime.progress import PROGRESS_PREFIX
from mlruns_assets.runtime.settings import ENV_PREFIX, Settings
from mlruns_assets.source.partition_keys import run_id_of
from mlruns_assets.warehouse.catalog import all_tables, asset_of_table
from mlruns_assets_tests.support.cli import extract_command, run_extract
from mlruns_assets_tests.support.partitions import key_of

SEED = 20260201
KILLS = 3
# Seconds after the first progress line: a rerun of the remaining runs takes ~1-2 s here, so
# longer delays mostly land after the extraction (in the leaderboard refresh or the exit).
MAX_KILL_DELAY = 0.8
CLASSIFICATION_RUNS = 12
N_TEST = 63

Counts = dict[tuple[str, str], dict[str, int]]  # (schema, table) -> run_id -> rows


@dataclass(frozen=True)
class Reference:
    """The demo store and the row counts of an uninterrupted extraction of it."""

    store: DemoStore
    counts: Counts

    def keys(self, schema: str) -> set[str]:
        return set(self.counts[(schema, "runs")])


PARTITIONED_TABLES = {t.name for t in all_tables()}


def _counts(database: Path) -> Counts:
    """Rows per run of every partitioned table (not the leaderboard, rebuilt whole after an
    extract). A read-write open: it replays a WAL left by a kill."""
    counts: Counts = {}
    with duckdb.connect(str(database)) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema != 'main'"  # the experiment schemas, not the database's own id
        ).fetchall()
        for schema, table in tables:
            if table not in PARTITIONED_TABLES:
                continue
            rows = conn.execute(
                f'SELECT run_id, count(*) FROM "{schema}"."{table}" GROUP BY run_id'
            ).fetchall()
            counts[(schema, table)] = dict(rows)
    return counts


def _clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return {**env, **overrides}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    root = tmp_path_factory.mktemp("crash_reference")
    store = write_demo_store(
        root / "store",
        backend="sqlite",
        runs=CLASSIFICATION_RUNS,
        bootstraps=20,
        n_test=N_TEST,
        imputation_runs=2,
    )
    database = root / "reference.duckdb"
    result = run_extract(
        store, database, root / "home", "--subject-map", str(store.subject_map_path)
    )
    assert result.exit_code == 0, result.output
    counts = _counts(database)
    classification = set(store.good_run_ids)
    # The per-run counts the STRATOS tables must have, whatever else changes.
    for table, rows in {
        "runs": 1,
        "essential_metrics": 1,
        "calibration_curves": 10,
        "dca_curves": 50,
        "predictions": N_TEST,
    }.items():
        assert counts[("classification", table)] == dict.fromkeys(classification, rows), table
    assert set(counts[("imputation", "runs")]) == set(store.imputation_run_ids)
    return Reference(store, counts)


def _assert_all_or_nothing(database: Path, home: Path, reference: Reference) -> set[str]:
    """Each run's rows are either all present with the reference counts or absent, in every
    table of its experiment; the instance records nothing the database lacks. Returns the
    run ids present."""
    counts = _counts(database) if database.exists() else {}
    present: set[str] = set()
    for (schema, table), expected in reference.counts.items():
        got = counts.get((schema, table), {})
        for run_id, rows in got.items():
            assert rows == expected.get(run_id), (schema, table, run_id, rows)  # none partial
        in_schema = set(counts.get((schema, "runs"), {}))
        if set(expected) == reference.keys(schema):  # a table with rows for every run
            assert set(got) == in_schema, (schema, table)  # the same runs in every table
        present |= in_schema
    with open_instance(home) as instance:
        for schema, table in reference.counts:
            materialized = instance.get_materialized_partitions(
                dg.AssetKey([schema, asset_of_table(schema)[table]])
            )
            runs = set(map(run_id_of, materialized))
            assert runs <= present, (schema, table, runs - present)
    return present


def _kill_after_progress(cmd: list[str], delay: float) -> tuple[bool, str]:
    """Start ``cmd``; once it prints its first progress line, wait ``delay`` s and kill -9 it.
    Returns (whether it was still running when killed, its output)."""
    proc = subprocess.Popen(
        cmd, env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    output: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = lines.get(timeout=max(deadline - time.monotonic(), 0.1))
        if line is None:
            break
        output.append(line)
        if line.startswith(PROGRESS_PREFIX):
            time.sleep(delay)
            break
    running = proc.poll() is None
    if running:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return running, "".join(output)


def test_kill_9_mid_extraction_then_rerun_leaves_every_partition_exactly_once(
    reference: Reference, tmp_path: Path
) -> None:
    database, home = tmp_path / "results.duckdb", tmp_path / "home"
    cmd = extract_command(reference.store, database, home, "--heartbeat-seconds", "0")
    rng = random.Random(SEED)
    every_run = reference.keys("classification") | reference.keys("imputation")
    mid_extraction = 0
    for _ in range(KILLS):
        killed, output = _kill_after_progress(cmd, rng.uniform(0.0, MAX_KILL_DELAY))
        present = _assert_all_or_nothing(database, home, reference)
        mid_extraction += killed and 0 < len(present) < len(every_run)
        print(f"kill -9 {'mid-extraction' if killed else 'too late'}: {len(present)} runs present")
    assert mid_extraction >= 2, "the kills should land mid-extraction"

    done = subprocess.run(cmd, env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _counts(database) == reference.counts  # every run exactly once, in every table
    assert _assert_all_or_nothing(database, home, reference) == every_run
    with open_instance(home) as instance:
        for schema, table in reference.counts:
            key = dg.AssetKey([schema, asset_of_table(schema)[table]])
            keys = sorted(key_of(instance, f"{schema}_runs", r) for r in reference.keys(schema))
            status = instance.get_status_by_partition(
                key, keys, dg.DynamicPartitionsDefinition(name=f"{schema}_runs")
            )
            assert status == dict.fromkeys(keys, dg.AssetPartitionStatus.MATERIALIZED), key
        # The killed commands' runs are not left "in progress": a later extract failed them.
        statuses = {r.status for r in instance.get_runs()}
        assert dg.DagsterRunStatus.STARTED not in statuses, statuses
        assert dg.DagsterRunStatus.FAILURE in statuses


WRITER = """
import logging, sys
from pathlib import Path
from mlruns_assets.runtime.instance import open_instance
from mlruns_assets.defs.partitions import range_tags
from mlruns_assets.runtime.progress import PROGRESS_LOGGER
from mlruns_assets.defs.project import build_definitions
from mlruns_assets.runtime.settings import Settings

PROGRESS_LOGGER.addHandler(logging.StreamHandler(sys.stdout))
PROGRESS_LOGGER.setLevel(logging.INFO)
defs = build_definitions(Settings.from_env())
with open_instance(Path(sys.argv[1])) as instance:
    job = defs.resolve_job_def("classification_extraction_job")
    result = job.execute_in_process(instance=instance, tags=range_tags(sys.argv[2:]),
                                    raise_on_error=False)
sys.exit(0 if result.success else 1)
"""
LOCK_WAIT = "for the database lock held by another process"


def test_two_processes_write_different_partitions_of_one_database_at_once(
    reference: Reference, tmp_path: Path
) -> None:
    store = reference.store
    keys = store.good_run_ids  # in end-time order, as the partitions were added
    half = len(keys) // 2
    database, home = tmp_path / "results.duckdb", tmp_path / "home"
    with open_instance(home) as instance:
        instance.add_dynamic_partitions("classification_runs", keys)
    config = Settings(
        tracking_uri=store.tracking_uri,
        database=str(database),
        experiments=("Classification",),
        subject_map=str(store.subject_map_path),
        heartbeat_seconds=0,
        # Each writer lets the other in after every partition (the default holds the file up
        # to 5 s, longer than either writer's whole range here).
        hold_connection_seconds=0,
    )
    env = _clean_env(**config.to_env())
    logs = [tmp_path / "writer_a.log", tmp_path / "writer_b.log"]
    # This test holds the file's write lock first, so that both writers start by waiting for
    # it; once released they contend with each other, a partition commit at a time.
    holder = duckdb.connect(str(database))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for log, chunk in zip(logs, (keys[:half], keys[half:]), strict=True):
            with log.open("wb") as sink:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-c", WRITER, str(home), chunk[0], chunk[-1]],
                        env=env,
                        stdout=sink,
                        stderr=subprocess.STDOUT,
                    )
                )
        deadline = time.monotonic() + 120
        while not all(LOCK_WAIT in log.read_text() for log in logs):
            assert time.monotonic() < deadline, [log.read_text()[-2000:] for log in logs]
            assert all(p.poll() is None for p in procs), [log.read_text() for log in logs]
            time.sleep(0.5)
    finally:
        holder.close()
        for proc in procs:
            try:
                proc.wait(timeout=240)
            finally:
                if proc.poll() is None:
                    proc.kill()
    assert [p.returncode for p in procs] == [0, 0], [log.read_text()[-3000:] for log in logs]

    counts = _counts(database)
    for (schema, table), expected in reference.counts.items():
        if schema == "classification":
            assert counts[(schema, table)] == expected, table
    with open_instance(home) as instance:
        runs = instance.get_runs()
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * 2
        for asset in ("runs", "stratos"):
            key = dg.AssetKey(["classification", asset])
            assert instance.get_materialized_partitions(key) == set(keys), asset
        # Both writers waited for the lock (below) and both ranges committed whole (above).
        # Their commits need not interleave: the one that loses a race sleeps a jittered
        # backoff of up to RETRY_CAP_SECONDS, and the other's whole range now fits in it.
        waits = [
            r.event_log_entry.user_message
            for run in runs
            for r in instance.get_records_for_run(run.run_id).records
            if LOCK_WAIT in (r.event_log_entry.user_message or "")
        ]
        assert waits and all(w.startswith(PROGRESS_PREFIX) for w in waits)
