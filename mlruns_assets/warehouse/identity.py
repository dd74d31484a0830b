"""The identity of a results database, and what it really holds.

Partition status lives in the Dagster instance, rows in the database: the two can drift apart (a
database deleted or replaced, another file given with the same instance). Each database carries
an id of its own, created with it; every materialization records it, and a partition recorded
against another id is missing here. One query per experiment lists the runs whose rows really
are in the database (``committed_run_ids``), so status never vouches for rows that are gone.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb

from mlruns_assets.warehouse.duckdb_writer import connect_with_retry, existing_tables

# In the main schema, apart from the experiment schemas (which hold only tables with run rows).
IDENTITY_TABLE = "mlruns_assets_database"


def ensure_database_id(conn: duckdb.DuckDBPyConnection) -> str:
    """The database's id, created (with its table) the first time."""
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS main.{IDENTITY_TABLE} "
        "(database_id VARCHAR NOT NULL, created_at TIMESTAMP WITH TIME ZONE NOT NULL)"
    )
    row = conn.execute(f"SELECT database_id FROM main.{IDENTITY_TABLE} LIMIT 1").fetchone()
    if row is not None:
        return str(row[0])
    new_id = uuid.uuid4().hex
    conn.execute(f"INSERT INTO main.{IDENTITY_TABLE} VALUES (?, now())", [new_id])
    return new_id


def read_database_id(conn: duckdb.DuckDBPyConnection) -> str | None:
    """The database's id, or None for a database this tool has not written yet."""
    if IDENTITY_TABLE not in existing_tables(conn, "main"):
        return None
    row = conn.execute(f"SELECT database_id FROM main.{IDENTITY_TABLE} LIMIT 1").fetchone()
    return None if row is None else str(row[0])


def committed_run_ids(conn: duckdb.DuckDBPyConnection, schema: str) -> set[str]:
    """Runs whose rows are in the experiment's schema (every committed run has its ``runs`` row:
    one transaction writes all of a run's tables)."""
    if "runs" not in existing_tables(conn, schema):
        return set()
    return {r[0] for r in conn.execute(f'SELECT run_id FROM "{schema}".runs').fetchall()}


def open_database_id(database: Path, *, create: bool) -> str | None:
    """The id of the database file (created with the file when ``create``), or None when the
    file does not exist (or has no id) and ``create`` is false."""
    if not create and not database.exists():
        return None
    conn = connect_with_retry(str(database), read_only=not create)
    try:
        return ensure_database_id(conn) if create else read_database_id(conn)
    finally:
        conn.close()
