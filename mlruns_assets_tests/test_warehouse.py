"""Per-partition commits into a real DuckDB file: atomic replacement, by-name inserts, locks."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from mlruns_assets.tables import METRIC_HISTORY, RUNS, TableSpec, create_table_sql, duckdb_type
from mlruns_assets.warehouse import (
    DatabaseLockTimeout,
    DuckDBWarehouse,
    connect_with_retry,
    delete_partitions,
)

POINTS = TableSpec(
    "points",
    pa.schema(
        [
            pa.field("run_id", pa.string(), False),
            pa.field("x", pa.float64()),
            pa.field("label", pa.string()),
        ]
    ),
    "test table",
)


def _points(run_id: str, n: int, start: float = 0.0) -> pa.Table:
    return pa.table(
        {
            "run_id": [run_id] * n,
            "x": [start + i for i in range(n)],
            "label": [f"{run_id}-{i}" for i in range(n)],
        },
        schema=POINTS.schema,
    )


def _rows(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def test_commit_replaces_only_that_runs_rows(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    wh = DuckDBWarehouse(database=str(db))
    wh.commit_partition("exp", "a", {POINTS: _points("a", 3)})
    wh.commit_partition("exp", "b", {POINTS: _points("b", 2)})
    counts = wh.commit_partition("exp", "a", {POINTS: _points("a", 5, start=100)})
    assert counts == {"points": 5}
    assert _rows(db, "SELECT run_id, count(*), min(x) FROM exp.points GROUP BY 1 ORDER BY 1") == [
        ("a", 5, 100.0),
        ("b", 2, 0.0),
    ]


def test_failed_validation_rolls_back_to_the_old_rows(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    wh = DuckDBWarehouse(database=str(db))
    wh.commit_partition("exp", "a", {POINTS: _points("a", 3)})

    def reject(conn: duckdb.DuckDBPyConnection) -> None:
        # The new rows are visible inside the transaction, then everything is rolled back.
        assert conn.execute("SELECT count(*) FROM exp.points").fetchone() == (7,)
        raise ValueError("rows fail checks")

    with pytest.raises(ValueError, match="rows fail checks"):
        wh.commit_partition("exp", "a", {POINTS: _points("a", 7, start=50)}, validate=reject)
    assert _rows(db, "SELECT count(*), max(x) FROM exp.points") == [(3, 2.0)]


def test_an_empty_output_still_replaces_the_old_rows(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    wh = DuckDBWarehouse(database=str(db))
    wh.commit_partition("exp", "a", {POINTS: _points("a", 3)})
    assert wh.commit_partition("exp", "a", {POINTS: _points("a", 0)}) == {"points": 0}
    assert _rows(db, "SELECT count(*) FROM exp.points") == [(0,)]


def test_inserts_are_by_name_not_by_position(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    wh = DuckDBWarehouse(database=str(db))
    shuffled = _points("a", 2).select(["label", "x", "run_id"])
    wh.commit_partition("exp", "a", {POINTS: shuffled})
    assert _rows(db, "SELECT run_id, x, label FROM exp.points ORDER BY x") == [
        ("a", 0.0, "a-0"),
        ("a", 1.0, "a-1"),
    ]


def test_declared_nullability_is_enforced_by_the_database(tmp_path: Path) -> None:
    sql = create_table_sql("exp", METRIC_HISTORY)
    assert '"value" DOUBLE NOT NULL' in sql and '"run_id" VARCHAR NOT NULL' in sql
    assert duckdb_type(RUNS.schema.field("params").type) == "MAP(VARCHAR, VARCHAR)"
    db = tmp_path / "w.duckdb"
    bad = pa.table({"run_id": [None], "x": [1.0], "label": ["z"]})
    with pytest.raises(duckdb.ConstraintException):
        DuckDBWarehouse(database=str(db)).commit_partition("exp", "a", {POINTS: bad})


def test_delete_partitions_removes_rows_of_deleted_runs(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    wh = DuckDBWarehouse(database=str(db))
    for run in ("a", "b", "c"):
        wh.commit_partition("exp", run, {POINTS: _points(run, 2)})
    with wh.get_connection() as conn:
        delete_partitions(conn, "exp", [POINTS, RUNS], ["a", "c"])  # runs table does not exist
    assert _rows(db, "SELECT DISTINCT run_id FROM exp.points") == [("b",)]


HOLD_LOCK = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.close()
"""


def _hold_lock(db: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(db), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_writer_waits_for_another_process_lock(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    duckdb.connect(str(db)).close()
    holder = _hold_lock(db, 2.0)
    try:
        started = time.monotonic()
        DuckDBWarehouse(database=str(db)).commit_partition("exp", "a", {POINTS: _points("a", 1)})
        waited = time.monotonic() - started
    finally:
        holder.wait(timeout=30)
    assert waited > 0.5  # it really had to wait for the other process, and then succeeded
    assert _rows(db, "SELECT count(*) FROM exp.points") == [(1,)]


def test_lock_wait_gives_up_with_a_one_line_error(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    duckdb.connect(str(db)).close()
    holder = _hold_lock(db, 10.0)
    try:
        with pytest.raises(DatabaseLockTimeout) as err:
            connect_with_retry(str(db), timeout_seconds=0.5)
    finally:
        holder.kill()
        holder.wait()
    assert str(db) in str(err.value) and "\n" not in str(err.value)
