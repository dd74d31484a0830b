"""The partition writer on a DuckLake catalog: a write conflict retries the whole transaction
(and says so), a partition streamed in chunks is not replayed, compaction merges small files,
writers creating the database id at once agree on one, and a Postgres restart inside a commit
fails that partition only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from mlruns_assets.warehouse.duckdb_writer import DuckDBWarehouse, replace_partition
from mlruns_assets.warehouse.identity import IDENTITY_TABLE
from mlruns_assets.warehouse.tables import TableSpec
from mlruns_assets_tests.support.postgres import Postgres, loopback_postgres

pytestmark = pytest.mark.ducklake

SPEC = TableSpec(
    "points",
    pa.schema([pa.field("run_id", pa.string(), False), pa.field("v", pa.int64(), False)]),
    "test rows",
)


def _rows(run_id: str, n: int) -> pa.Table:
    return pa.table({"run_id": [run_id] * n, "v": list(range(n))}, schema=SPEC.schema)


def _counts(warehouse: DuckDBWarehouse) -> dict[str, int]:
    with warehouse.get_connection(read_only=True) as conn:
        rows = conn.execute("SELECT run_id, count(*) FROM s.points GROUP BY 1").fetchall()
    return dict(rows)


@pytest.fixture
def lake(new_warehouse: Callable[[], str]) -> DuckDBWarehouse:
    """A new catalog holding runs a (5 rows) and b (5 rows)."""
    warehouse = DuckDBWarehouse(database="", warehouse=new_warehouse())
    with warehouse.partition_writer() as writer:
        for run_id in ("a", "b"):
            writer.commit("s", run_id, {SPEC: _rows(run_id, 5)})
    return warehouse


def _conflicting(
    lake: DuckDBWarehouse,
) -> tuple[Callable[[duckdb.DuckDBPyConnection], None], list[int]]:
    """A ``validate`` that, on the first attempt only, lets another writer replace run b and
    commit first: the writer's own commit then conflicts."""
    other = lake.open_connection()
    attempts: list[int] = []

    def validate(_conn: duckdb.DuckDBPyConnection) -> None:
        attempts.append(len(attempts) + 1)
        if len(attempts) == 1:
            replace_partition(other, "s", "b", {SPEC: _rows("b", 7)})

    return validate, attempts


def test_a_write_conflict_retries_the_whole_transaction_and_says_so(
    lake: DuckDBWarehouse,
) -> None:
    validate, attempts = _conflicting(lake)
    lines: list[str] = []
    with lake.partition_writer() as writer:
        rows = writer.commit("s", "a", {SPEC: _rows("a", 3)}, validate, report=lines.append)
        assert writer.conflicts_retried == 1
    assert rows == {"points": 3}
    assert attempts == [1, 2]
    assert len(lines) == 1 and "write conflict" in lines[0] and "(1 of 8)" in lines[0], lines
    assert _counts(lake) == {"a": 3, "b": 7}


def test_a_partition_streamed_in_chunks_is_not_replayed_and_keeps_its_old_rows(
    lake: DuckDBWarehouse,
) -> None:
    validate, attempts = _conflicting(lake)
    chunks: Iterator[pa.Table] = iter([_rows("a", 2), _rows("a", 2)])
    with lake.partition_writer() as writer, pytest.raises(duckdb.Error, match="conflict"):
        writer.commit("s", "a", {SPEC: chunks}, validate)
    assert attempts == [1]
    assert _counts(lake) == {"a": 5, "b": 7}


def test_compaction_after_n_commits_by_any_writer_merges_the_small_files(
    new_warehouse: Callable[[], str],
) -> None:
    every = 12
    warehouse = DuckDBWarehouse(
        database="", warehouse=new_warehouse(), compact_every_partitions=every
    )
    lines: list[str] = []
    # Two writers (as two steps would be), neither committing `every` partitions itself.
    with warehouse.partition_writer() as one, warehouse.partition_writer() as other:
        for k in range(every):  # above DuckLake's inlining limit: one Parquet file each
            writer = (one, other)[k % 2]
            writer.commit("s", f"r{k}", {SPEC: _rows(f"r{k}", 200)}, report=lines.append)
    # Counted in catalog snapshots (the schema and the table took two): one compaction, of
    # the files committed until then.
    compacted = [line for line in lines if line.startswith("compacted")]
    assert compacted == [f"compacted the data files: {every - 2} -> 1"], lines
    assert sum(_counts(warehouse).values()) == every * 200


MAKE_ID = """
import sys
from mlruns_assets.warehouse.duckdb_writer import DuckDBWarehouse
from mlruns_assets.warehouse.identity import ensure_database_id
with DuckDBWarehouse(database="", warehouse=sys.argv[1]).get_connection() as conn:
    print(ensure_database_id(conn))
"""


def test_processes_creating_the_database_id_at_once_agree_on_one(
    new_warehouse: Callable[[], str],
) -> None:
    warehouse = new_warehouse()
    procs = [
        subprocess.Popen([sys.executable, "-c", MAKE_ID, warehouse], stdout=subprocess.PIPE)
        for _ in range(4)
    ]
    ids = {proc.communicate(timeout=120)[0].decode().strip() for proc in procs}
    assert [p.returncode for p in procs] == [0] * 4
    assert len(ids) == 1
    lake = DuckDBWarehouse(database="", warehouse=warehouse)
    with lake.get_connection(read_only=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM main.{IDENTITY_TABLE}").fetchone()
    assert row == (1,)


def test_a_postgres_restart_during_a_commit_fails_that_partition_only(
    postgres: Postgres, tmp_path: Path
) -> None:
    """The catalog's Postgres stopped (fast shutdown) inside a partition's transaction, as
    ``.ci/distributed --ducklake --restart-postgres`` can: that commit fails, nothing of it
    lands, and once Postgres is back the same process's attached catalog commits again (its own
    cluster: the session's stays up for the other tests)."""
    del postgres  # only for the skip when DuckLake cannot run here
    with loopback_postgres() as own:
        warehouse = DuckDBWarehouse(database="", warehouse=own.warehouse("lake", tmp_path))
        with warehouse.partition_writer() as writer:
            writer.commit("s", "a", {SPEC: _rows("a", 5)})

            def stop_postgres(_conn: duckdb.DuckDBPyConnection) -> None:
                own.stack.stop("postgres", signal.SIGINT)

            with pytest.raises(duckdb.Error):
                writer.commit("s", "a", {SPEC: _rows("a", 2)}, stop_postgres)
            own.stack._run_postgres("postgres" if os.geteuid() == 0 else None)
            writer.commit("s", "b", {SPEC: _rows("b", 3)})
        assert _counts(warehouse) == {"a": 5, "b": 3}
