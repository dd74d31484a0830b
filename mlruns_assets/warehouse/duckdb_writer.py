"""The DuckDB results database: connections that wait for the file lock, and per-partition commits.

Built on dagster-duckdb's ``DuckDBResource`` (same ``database`` and ``connection_config`` fields)
but it departs from dagster-duckdb's IO manager for writes, because that IO manager
- deletes and inserts in autocommit mode, so a crash in between leaves an empty partition that
  Dagster still records as materialized;
- inserts positionally, so a column-order drift writes wrong columns;
- writes one output for a whole partition range, while a shared run here must commit (and record)
  each partition on its own;
- retries the lock with un-jittered backoff, so concurrent writers retry in lock-step.
Here each partition is one transaction over all of its tables: delete the run's rows, insert the
Arrow tables BY NAME (a large table chunk by chunk), commit. A crash leaves either the old rows or
the new ones.

The same resource opens a DuckLake warehouse (``warehouse``, see ``warehouse.ducklake``): the same
SQL and transactions, no file lock; a transaction refused for a write conflict is retried whole.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
from dagster_duckdb import DuckDBResource
from pydantic import Field

from mlruns_assets.runtime.warehouse_url import WarehouseUrl, parse_warehouse
from mlruns_assets.warehouse import ducklake
from mlruns_assets.warehouse.tables import TableData, TableSpec, create_table_sql

T = TypeVar("T")
_LOCK_MARKERS = ("lock", "Conflicting lock", "different configuration")
# Measured (DuckDB 2.0): DuckDB's worker threads allocate in their own malloc arenas, which
# fragment: a step's RSS crept ~3 MB per partition. One thread keeps it flat; the per-partition
# work is small.
STORAGE_SETTINGS: dict[str, Any] = {"threads": 1}
# For partitions streamed in chunks (signal arrays, 300-507 signals x 1,981 points): by default
# the checkpoint at close "vacuums" by rewriting trailing row groups into bigger ones, and memory
# then grows with the table (0.6-1.5 GB spikes after ~50 partitions). Such partitions fill whole
# blocks, so they skip it. Small partitions must not: without vacuum each commit keeps its own
# partly filled blocks per column, and the file grew ~7x over 14 classification runs.
BULK_SETTINGS: dict[str, Any] = {"max_vacuum_tasks": 0}
# A writer that holds the file lets it go for only the next partition's read (~0.1-0.2 s) at a
# time: a waiter sleeping up to 2 s between attempts could miss every such gap. A failed open
# costs about a millisecond.
RETRY_CAP_SECONDS = 0.5
# DuckLake write conflicts: the whole transaction again after a full-jitter backoff (a conflict
# means another writer just committed: waiting longer than its next commit gains nothing).
CONFLICT_BASE_SECONDS, CONFLICT_CAP_SECONDS = 0.1, 5.0
# A compaction during extraction keeps the snapshots (and files) of the last minutes: a
# concurrent writer's transaction may still read a file being merged away.
COMPACTION_KEEP = "10 minutes"


class DatabaseLockTimeout(RuntimeError):
    """Another process held the database file for longer than the configured wait."""


def _is_lock_error(exc: Exception) -> bool:
    return any(marker in str(exc) for marker in _LOCK_MARKERS)


def connect_with_retry(
    database: str,
    *,
    read_only: bool = False,
    timeout_seconds: float = 300.0,
    config: Mapping[str, Any] | None = None,
    on_wait: Callable[[float], None] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open ``database``, retrying while another process holds its lock.

    DuckDB allows one writing process per file, and a read-only open fails while another process
    writes. Waits use full-jitter exponential backoff (capped at ``RETRY_CAP_SECONDS``) so that
    several writers do not retry in lock-step; after ``timeout_seconds`` a
    ``DatabaseLockTimeout`` names the file.
    ``on_wait(seconds waited so far)`` is called before each retry: a step waiting for the lock
    is alive and says so (the stall sensor would otherwise take it for hung).
    """
    started = time.monotonic()
    deadline = started + timeout_seconds
    delay = 0.05
    while True:
        try:
            settings = {**STORAGE_SETTINGS, **(config or {})}
            return duckdb.connect(database, read_only=read_only, config=settings)
        except (duckdb.IOException, duckdb.ConnectionException, RuntimeError) as exc:
            if not _is_lock_error(exc):
                raise
            if time.monotonic() >= deadline:
                raise DatabaseLockTimeout(
                    f"database {database} stayed locked by another process for "
                    f"{timeout_seconds:.0f} s: {str(exc).splitlines()[0]}"
                ) from exc
        if on_wait is not None:
            on_wait(time.monotonic() - started)
        time.sleep(random.uniform(0, delay))
        delay = min(delay * 2, RETRY_CAP_SECONDS)


def database_file_problem(path: Path) -> str | None:
    """Why an existing file is no DuckDB database this tool can open, or None. Read from its
    header: DuckDB would otherwise try to download an extension to read e.g. a SQLite file."""
    try:
        with path.open("rb") as handle:
            header = handle.read(16)
    except OSError as exc:
        return f"cannot read it: {exc.strerror}"
    if header[8:12] == b"DUCK":
        return None
    if header.startswith(b"SQLite format 3"):
        return "a SQLite file, not a DuckDB database (MLflow's tracking store?)"
    if not header:
        return None if path.stat().st_size == 0 else "not a DuckDB database"
    return "not a DuckDB database"


def existing_tables(conn: duckdb.DuckDBPyConnection, schema_name: str) -> set[str]:
    """Names of the tables the schema holds (none when the schema does not exist)."""
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
        "AND table_catalog = current_database()",
        [schema_name],
    ).fetchall()
    return {r[0] for r in rows}


def experiment_schemas(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Schemas written by this tool (every experiment schema has a ``runs`` table), sorted."""
    rows = conn.execute(
        "SELECT DISTINCT table_schema FROM information_schema.tables "
        "WHERE table_name = 'runs' AND table_catalog = current_database() ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def ensure_tables(
    conn: duckdb.DuckDBPyConnection, schema_name: str, specs: list[TableSpec]
) -> None:
    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema_name}"')
    for spec in specs:
        conn.execute(create_table_sql(schema_name, spec))


def insert_chunks(conn: duckdb.DuckDBPyConnection, target: str, chunks: Iterable[pa.Table]) -> int:
    """Insert Arrow tables BY NAME one after another; returns the rows inserted.

    Each chunk is released before the next is asked for, so a lazy iterable never has more than
    one chunk alive here. The chunk is read through DuckDB's replacement scan of a local
    variable: a ``register``-ed view would be kept alive (with its chunk) until the commit even
    after ``unregister``, and ``from_arrow(...).query`` hides a failed insert's real error."""
    rows = 0
    for chunk in chunks:
        if chunk.num_rows:
            _insert_by_name(conn, target, chunk)
        rows += chunk.num_rows
        del chunk
    return rows


def _insert_by_name(
    conn: duckdb.DuckDBPyConnection, target: str, mlruns_assets_incoming: pa.Table
) -> None:
    # DuckDB finds the table among this frame's locals by its (unlikely table) name; the frame,
    # and the snapshot of its locals that the lookup takes, go away on return.
    conn.execute(f"INSERT INTO {target} BY NAME SELECT * FROM mlruns_assets_incoming")


def replace_partition(
    conn: duckdb.DuckDBPyConnection,
    schema_name: str,
    run_id: str,
    tables: Mapping[TableSpec, TableData],
    validate: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
    clear: Sequence[TableSpec] = (),
    present: set[str] | None = None,
) -> dict[str, int]:
    """Replace one run's rows in every given table, in one transaction. Returns rows per table.
    The run's rows in the ``clear`` tables (those of other kinds) go in the same transaction.
    ``present`` is the schema's tables as known on this connection (a writer's cache, updated
    here: a table is created once per connection, not per partition); None looks them up.

    A table's value is an Arrow table or an iterable of Arrow tables (chunks, read lazily inside
    the transaction). ``validate`` runs inside the transaction after the inserts; if it (or a
    chunk) raises, nothing of the run changes. An empty table still deletes the run's old rows:
    the partition then holds nothing, as the latest extraction says.
    """
    if present is None:
        present = existing_tables(conn, schema_name)
    missing = [spec for spec in tables if spec.name not in present]
    if missing:
        ensure_tables(conn, schema_name, missing)
        present.update(spec.name for spec in missing)
    stale = [s for s in clear if s not in tables and s.name in present]
    rows: dict[str, int] = {}
    conn.begin()
    try:
        for spec in stale:
            conn.execute(f'DELETE FROM "{schema_name}"."{spec.name}" WHERE run_id = ?', [run_id])
        for spec, data in tables.items():
            target = f'"{schema_name}"."{spec.name}"'
            conn.execute(f"DELETE FROM {target} WHERE run_id = ?", [run_id])
            chunks = (data,) if isinstance(data, pa.Table) else data
            rows[spec.name] = insert_chunks(conn, target, chunks)  # bounded: one count per table
        if validate is not None:
            validate(conn)
        conn.commit()
    except BaseException:
        rollback_quietly(conn)
        raise
    return rows


def rollback_quietly(conn: duckdb.DuckDBPyConnection) -> None:
    """Roll back if a transaction is still open: a refused commit has ended it already, and the
    rollback's own error would hide the cause."""
    with suppress(duckdb.TransactionException):
        conn.rollback()


def delete_partitions(
    conn: duckdb.DuckDBPyConnection, schema_name: str, specs: list[TableSpec], run_ids: list[str]
) -> int:
    """Remove every row of the given runs from the given tables, in one transaction (runs gone
    from MLflow; a failed run's rows from an earlier extraction). Returns the rows removed."""
    existing = existing_tables(conn, schema_name)
    removed = 0
    conn.begin()
    try:
        for spec in specs:
            if spec.name in existing:
                row = conn.execute(
                    f'DELETE FROM "{schema_name}"."{spec.name}" WHERE run_id IN '
                    "(SELECT unnest(?::VARCHAR[]))",
                    [run_ids],
                ).fetchone()
                removed += int(row[0]) if row else 0
        conn.commit()
        return removed
    except BaseException:
        rollback_quietly(conn)
        raise


class DuckDBWarehouse(DuckDBResource):
    """The results warehouse: the DuckDB file ``database``, or the DuckLake catalog that
    ``warehouse`` names. Each MLflow experiment is a schema; each partition a run's rows."""

    warehouse: str = Field(
        default="",
        description="A DuckLake warehouse (ducklake:postgres:<connection string>?data_path=...) "
        "instead of the DuckDB file; `database` is then only where local defaults go.",
    )
    duckdb_extensions: str | None = Field(
        default=None,
        description="DuckLake: a folder holding the DuckDB extension files, tried after the "
        "extension wheels and before DuckDB's online repository.",
    )
    conflict_retries: int = Field(
        default=8,
        description="DuckLake: how often a partition's transaction is retried after a write "
        "conflict with another writer before the partition fails.",
    )
    compact_every_partitions: int = Field(
        default=500,
        description="DuckLake: merge small data files after every this many commits to the "
        "warehouse, by any writer (0: never).",
    )

    lock_timeout_seconds: float = Field(
        default=300.0,
        description="How long to wait for another process's lock on the database file.",
    )
    min_free_disk_gb: float = Field(
        default=5.0,
        description="An extraction step fails at once when the database's disk has less free.",
    )
    hold_connection_seconds: float = Field(
        default=5.0,
        description="How long an extraction step keeps its write connection across partitions "
        "before closing it so that other processes get the database (each partition is still "
        "its own transaction).",
    )

    @property
    def url(self) -> WarehouseUrl:
        """The parsed warehouse (the DuckDB file when ``warehouse`` is empty)."""
        return parse_warehouse(self.warehouse or f"duckdb:{self.database}")

    def exists(self) -> bool:
        """Whether there is a warehouse to read: the file exists, or the DuckLake catalog has
        been created (by a first connection that may write)."""
        if not self.url.is_ducklake:
            return Path(self.database).exists()
        try:
            self.open_connection(read_only=True).close()
        except ducklake.WarehouseNotCreated:
            return False
        return True

    @contextmanager
    def get_connection(
        self,
        read_only: bool = False,
        on_wait: Callable[[float], None] | None = None,
        bulk: bool = False,
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        conn = self.open_connection(read_only=read_only, on_wait=on_wait, bulk=bulk)
        try:
            yield conn
        finally:
            conn.close()

    def open_connection(
        self,
        read_only: bool = False,
        on_wait: Callable[[float], None] | None = None,
        bulk: bool = False,
    ) -> duckdb.DuckDBPyConnection:
        """A connection to the database (created with its folder if missing), once the lock is
        free; ``bulk`` adds ``BULK_SETTINGS``. For DuckLake: the catalog attached (no lock)."""
        config = {**(BULK_SETTINGS if bulk else {}), **self.connection_config}
        if self.url.is_ducklake:
            return ducklake.connect(
                self.url,
                read_only=read_only,
                config={**STORAGE_SETTINGS, **config},
                extension_directory=self.duckdb_extensions,
            )
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        return connect_with_retry(
            self.database,
            read_only=read_only,
            timeout_seconds=self.lock_timeout_seconds,
            config=config,
            on_wait=on_wait,
        )

    def commit_partition(
        self,
        schema_name: str,
        run_id: str,
        tables: Mapping[TableSpec, TableData],
        validate: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
        on_wait: Callable[[float], None] | None = None,
    ) -> dict[str, int]:
        """Open, replace the run's rows in one transaction, close (so other writers get a turn)."""
        with self.partition_writer() as writer:
            return writer.commit(schema_name, run_id, tables, validate, on_wait)

    @contextmanager
    def partition_writer(self) -> Iterator[PartitionWriter]:
        """A writer for a step's partitions; its connection is closed on exit."""
        writer = PartitionWriter(self)
        try:
            yield writer
        finally:
            writer.close()

    def remove_runs(self, schema_name: str, specs: list[TableSpec], run_ids: list[str]) -> None:
        """Remove the runs' rows in one transaction (retried whole after a DuckLake write
        conflict, as a partition's)."""
        for attempt in range(self.conflict_retries + 1):
            try:
                with self.get_connection() as conn:
                    delete_partitions(conn, schema_name, specs, run_ids)
                return
            except duckdb.Error as exc:
                if not ducklake.is_write_conflict(exc) or attempt == self.conflict_retries:
                    raise
            cap = min(CONFLICT_CAP_SECONDS, CONFLICT_BASE_SECONDS * 2 ** (attempt + 1))
            time.sleep(random.uniform(0, cap))


class PartitionWriter:
    """Commits partitions, one transaction each, on a connection kept open across partitions.

    Opening the file and the checkpoint at close cost ~70 ms, about a classification
    partition's own commit (benchmarks/commit_patterns.py, N = 400 report: 145 ms per partition
    reopening each time, 82 ms with this writer, 76 ms on one connection throughout).
    The connection is closed once it has been held ``hold_connection_seconds`` (other processes
    wait for the file lock meanwhile), after any failed partition (a DuckDB error may leave the
    connection unusable), and after each partition streamed in chunks, which gets a connection
    of its own with ``BULK_SETTINGS``.
    """

    def __init__(self, warehouse: DuckDBWarehouse) -> None:
        self.warehouse = warehouse
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._present: dict[str, set[str]] = {}  # tables by schema, known on this connection
        self._opened = 0.0
        self.connections_opened = 0
        self.conflicts_retried = 0
        self.partitions_committed = 0

    def commit(
        self,
        schema_name: str,
        run_id: str,
        tables: Mapping[TableSpec, TableData],
        validate: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
        on_wait: Callable[[float], None] | None = None,
        clear: Sequence[TableSpec] = (),
        report: Callable[[str], None] | None = None,
    ) -> dict[str, int]:
        """Replace the run's rows in every given table in one transaction (and remove them
        from the ``clear`` tables); rows per table. A DuckLake write conflict retries the whole
        transaction (jittered, at most ``conflict_retries`` times; a partition streamed in
        chunks cannot be read twice and fails instead), and after every
        ``compact_every_partitions`` commits to the catalog (by any writer) the small files are
        merged; ``report`` gets a line for each (the heartbeat)."""
        # Chunks a generator hands out once cannot be inserted again.
        replayable = not any(isinstance(t, Iterator) for t in tables.values())
        every = self.warehouse.compact_every_partitions if self.warehouse.url.is_ducklake else 0
        before = self.with_connection(ducklake.latest_snapshot) if every else 0
        attempt = 0
        while True:
            try:
                rows = self._commit_once(schema_name, run_id, tables, validate, on_wait, clear)
                break
            except Exception as exc:
                limit = self.warehouse.conflict_retries
                if not ducklake.is_write_conflict(exc) or not replayable or attempt >= limit:
                    raise
                attempt += 1
                self.conflicts_retried += 1
                cap = min(CONFLICT_CAP_SECONDS, CONFLICT_BASE_SECONDS * 2**attempt)
                delay = random.uniform(0, cap)
                if report is not None:
                    report(
                        f"write conflict with another writer; retrying the whole transaction "
                        f"in {delay:.1f} s ({attempt} of {limit})"
                    )
                time.sleep(delay)
        self.partitions_committed += 1
        # Every commit is a snapshot of the whole catalog, whoever wrote it: the writer whose
        # commit crosses a multiple of `every` compacts.
        if every and self.with_connection(ducklake.latest_snapshot) // every != before // every:
            self.compact(report)
        return rows

    def compact(self, report: Callable[[str], None] | None = None) -> tuple[int, int] | None:
        """Merge the DuckLake warehouse's small data files: (files before, after), or None
        when another writer's conflicting commit got in the way (the next compaction will do)."""

        def run(conn: duckdb.DuckDBPyConnection) -> tuple[int, int]:
            return ducklake.compact(conn, keep=COMPACTION_KEEP)

        try:
            before, after = self.with_connection(run)
        except duckdb.Error as exc:
            if report is not None:
                report(f"compaction skipped: {' '.join(str(exc).split())[:200]}")
            return None
        if report is not None:
            report(f"compacted the data files: {before} -> {after}")
        return before, after

    def _commit_once(
        self,
        schema_name: str,
        run_id: str,
        tables: Mapping[TableSpec, TableData],
        validate: Callable[[duckdb.DuckDBPyConnection], None] | None,
        on_wait: Callable[[float], None] | None,
        clear: Sequence[TableSpec],
    ) -> dict[str, int]:
        # DuckLake has no file to vacuum nor lock to share: one connection throughout (each
        # opening loads the extensions and attaches the catalog).
        lake = self.warehouse.url.is_ducklake
        bulk = not lake and any(not isinstance(t, pa.Table) for t in tables.values())
        if bulk:
            self.close()
        if self._conn is None:
            self._conn = self._open(on_wait, bulk)
        if schema_name not in self._present:
            self._present[schema_name] = existing_tables(self._conn, schema_name)
        present = self._present[schema_name]
        try:
            return replace_partition(
                self._conn, schema_name, run_id, tables, validate, clear, present
            )
        except BaseException:
            self.close()
            raise
        finally:
            held = time.monotonic() - self._opened
            if bulk or (not lake and held >= self.warehouse.hold_connection_seconds):
                self.close()

    def with_connection(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """``work`` on the writer's connection (opened if need be), e.g. reading the database's
        id or removing a failed run's old rows; the connection is closed if it raises."""
        if self._conn is None:
            self._conn = self._open(None, bulk=False)
        try:
            return work(self._conn)
        except BaseException:
            self.close()
            raise

    def _open(
        self, on_wait: Callable[[float], None] | None, bulk: bool
    ) -> duckdb.DuckDBPyConnection:
        conn = self.warehouse.open_connection(on_wait=on_wait, bulk=bulk)
        self._opened = time.monotonic()
        self.connections_opened += 1
        return conn

    def close(self) -> None:
        self._present.clear()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()
