"""The identity of a results database, and what it really holds.

Partition status lives in the Dagster instance, rows in the database: the two can drift apart (a
database deleted or replaced, another file given with the same instance). Each database carries
an id of its own, created with it; every materialization records it, and a partition recorded
against another id is missing here. One query per experiment lists the runs whose rows really
are in the database (``committed_run_ids``), so status never vouches for rows that are gone.
"""

from __future__ import annotations

import time
import uuid

import duckdb

from mlruns_assets.warehouse import ducklake
from mlruns_assets.warehouse.duckdb_writer import (
    DuckDBWarehouse,
    existing_tables,
    rollback_quietly,
)

# In the main schema, apart from the experiment schemas (which hold only tables with run rows).
IDENTITY_TABLE = "mlruns_assets_database"


def ensure_database_id(conn: duckdb.DuckDBPyConnection, attempts: int = 10) -> str:
    """The database's id, created (with its table) the first time.

    Table and row are made in one transaction, so no reader sees the table without its id;
    two DuckLake writers creating it at once conflict, and the one refused reads the other's
    id (retried up to ``attempts`` times)."""
    for attempt in range(attempts):
        existing = read_database_id(conn)
        if existing is not None:
            return existing
        conn.begin()
        try:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS main.{IDENTITY_TABLE} "
                "(database_id VARCHAR NOT NULL, created_at TIMESTAMP WITH TIME ZONE NOT NULL)"
            )
            # Read again in the transaction: another writer may have committed since.
            found = read_database_id(conn)
            database_id = found or uuid.uuid4().hex
            if found is None:
                conn.execute(f"INSERT INTO main.{IDENTITY_TABLE} VALUES (?, now())", [database_id])
            conn.commit()
            return database_id
        except duckdb.Error as exc:
            rollback_quietly(conn)
            if not ducklake.is_write_conflict(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def read_database_id(conn: duckdb.DuckDBPyConnection) -> str | None:
    """The database's id, or None for a database this tool has not written yet."""
    if IDENTITY_TABLE not in existing_tables(conn, "main"):
        return None
    row = conn.execute(
        f"SELECT database_id FROM main.{IDENTITY_TABLE} ORDER BY created_at, database_id LIMIT 1"
    ).fetchone()
    return None if row is None else str(row[0])


def committed_run_ids(conn: duckdb.DuckDBPyConnection, schema: str) -> set[str]:
    """Runs whose rows are in the experiment's schema (every committed run has its ``runs`` row:
    one transaction writes all of a run's tables)."""
    if "runs" not in existing_tables(conn, schema):
        return set()
    return {r[0] for r in conn.execute(f'SELECT run_id FROM "{schema}".runs').fetchall()}


def open_database_id(warehouse: DuckDBWarehouse, *, create: bool) -> str | None:
    """The id of the warehouse (created with it when ``create``), or None when it does not
    exist (or has no id) and ``create`` is false."""
    if not create and not warehouse.exists():
        return None
    with warehouse.get_connection(read_only=not create) as conn:
        return ensure_database_id(conn) if create else read_database_id(conn)
