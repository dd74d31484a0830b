"""Per-partition commits into a real DuckDB file: atomic replacement, by-name inserts, locks."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from mlruns_assets.warehouse.duckdb_writer import (
    DatabaseLockTimeout,
    DuckDBWarehouse,
    connect_with_retry,
    delete_partitions,
)
from mlruns_assets.warehouse.tables import (
    METRIC_HISTORY,
    RUNS,
    TableSpec,
    create_table_sql,
    duckdb_type,
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


TRY_OPEN = """
import sys, duckdb
try:
    duckdb.connect(sys.argv[1], read_only=True).close()
except duckdb.IOException as exc:
    print("locked" if "lock" in str(exc) else exc)
else:
    print("opened")
"""


def _other_process_can_open(db: Path) -> bool:
    done = subprocess.run(
        [sys.executable, "-c", TRY_OPEN, str(db)], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() in ("locked", "opened"), done.stdout + done.stderr
    return done.stdout.strip() == "opened"


def test_partition_writer_keeps_its_connection_for_the_hold_time_then_lets_others_in(
    tmp_path: Path,
) -> None:
    db = tmp_path / "w.duckdb"
    holding = DuckDBWarehouse(database=str(db), hold_connection_seconds=60)
    with holding.partition_writer() as writer:
        for run in "abcde":
            assert writer.commit("exp", run, {POINTS: _points(run, 2)}) == {"points": 2}
        assert writer.connections_opened == 1
        assert not _other_process_can_open(db)  # held across partitions...
    assert _other_process_can_open(db)  # ...and released when the step's writer closes
    assert _rows(db, "SELECT count(DISTINCT run_id), count(*) FROM exp.points") == [(5, 10)]

    polite = DuckDBWarehouse(database=str(db), hold_connection_seconds=0)
    with polite.partition_writer() as writer:
        for run in "abc":
            writer.commit("exp", run, {POINTS: _points(run, 1)})
            assert _other_process_can_open(db)  # closed after every partition
        assert writer.connections_opened == 3


def test_partition_writer_reopens_after_a_failed_partition_and_keeps_the_committed_ones(
    tmp_path: Path,
) -> None:
    db = tmp_path / "w.duckdb"
    wh = DuckDBWarehouse(database=str(db), hold_connection_seconds=60)

    def reject(conn: duckdb.DuckDBPyConnection) -> None:
        raise ValueError("bad rows")

    with wh.partition_writer() as writer:
        writer.commit("exp", "a", {POINTS: _points("a", 2)})
        with pytest.raises(ValueError, match="bad rows"):
            writer.commit("exp", "b", {POINTS: _points("b", 3)}, validate=reject)
        assert _other_process_can_open(db)  # the failure closed the connection
        writer.commit("exp", "c", {POINTS: _points("c", 1)})
        # A partition streamed in chunks gets a connection of its own, closed after it.
        chunks = iter([_points("d", 2), _points("d", 2, start=2)])
        assert writer.commit("exp", "d", {POINTS: chunks}) == {"points": 4}
        assert _other_process_can_open(db)
        assert writer.connections_opened == 3
    assert _rows(db, "SELECT run_id, count(*) FROM exp.points GROUP BY 1 ORDER BY 1") == [
        ("a", 2),
        ("c", 1),
        ("d", 4),
    ]
