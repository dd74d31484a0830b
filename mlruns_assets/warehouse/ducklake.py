"""The DuckLake warehouse: a catalog in Postgres, Parquet data files in a folder or on S3.

A connection is an in-memory DuckDB with the catalog attached as ``lake`` and made the default
(``USE lake``), so the writer's and the checks' SQL runs unchanged: each experiment a schema,
each partition one transaction. Several processes write at once; DuckLake commits optimistically,
and a transaction that touched what another one committed meanwhile fails with a write conflict
(``is_write_conflict``): the writer retries the whole transaction.

The extensions (``ducklake``, ``postgres_scanner``, ``httpfs`` for S3) are found in this order:
the ``duckdb-extension-*`` wheels of the ``ducklake`` extra built for the running DuckDB; the
configured extension folder (``--duckdb-extensions``, for machines without the network); DuckDB's
own ``INSTALL`` from its extension repository (deploy/DUCKLAKE.md).
"""

from __future__ import annotations

import importlib
import os
import random
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import duckdb

from mlruns_assets.runtime.errors import UsageError
from mlruns_assets.runtime.warehouse_url import WarehouseUrl

CATALOG = "lake"
INIT_ATTEMPTS = 5
# An attach or a catalog read slower than 2 s would draw DuckDB's progress bar on stdout.
NO_PROGRESS_BAR = "SET enable_progress_bar = false"
_NOT_CREATED = "creating a new DuckLake is explicitly disabled"
# One attached instance per process and warehouse (``connect``).
_INSTANCES: dict[tuple[object, ...], duckdb.DuckDBPyConnection] = {}
_INSTANCES_LOCK = threading.Lock()
# Extension name -> the package of the wheel that ships it.
WHEELS = {
    "postgres_scanner": "duckdb_extension_postgres_scanner",
    "ducklake": "duckdb_extension_ducklake",
    "httpfs": "duckdb_extension_httpfs",
}
_CONFLICT_MARKERS = ("transaction conflict", "write-write conflict", "conflict on tuple")
# Standard AWS variables: the S3 secret for a data path on S3 (an endpoint for a local S3).
_S3_ENV = {
    "KEY_ID": ("AWS_ACCESS_KEY_ID",),
    "SECRET": ("AWS_SECRET_ACCESS_KEY",),
    "REGION": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "ENDPOINT": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
}


class WarehouseUnavailable(UsageError):
    """The DuckLake warehouse cannot be opened: one line naming what and why."""


class WarehouseNotCreated(WarehouseUnavailable):
    """Opened for reading, the catalog has not been created yet (nothing extracted into it)."""


def is_write_conflict(exc: BaseException) -> bool:
    """A DuckLake commit refused because another transaction changed the same data first."""
    return isinstance(exc, duckdb.Error) and any(m in str(exc).lower() for m in _CONFLICT_MARKERS)


def _wheel_file(name: str) -> Path | None:
    if name not in WHEELS:
        return None
    try:
        module = importlib.import_module(WHEELS[name])
    except ImportError:
        return None
    folder = Path(module.__file__ or "").parent
    found = folder / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    return found if found.is_file() else None


def load_extension(conn: duckdb.DuckDBPyConnection, name: str, directory: str | None) -> None:
    """Load an extension from its wheel, else the extension folder, else DuckDB's repository;
    one line naming each place tried when none has it."""
    tried: list[str] = []  # bounded: three places
    wheel = _wheel_file(name)
    if wheel is not None:
        conn.execute(f"LOAD '{wheel}'")
        return
    package = WHEELS.get(name, f"duckdb_extension_{name}")
    tried.append(f"no {package} wheel for DuckDB {duckdb.__version__}")
    if directory:
        candidate = Path(directory) / f"{name}.duckdb_extension"
        if candidate.is_file():
            conn.execute(f"LOAD '{candidate}'")
            return
        tried.append(f"not in {directory}")
    try:
        conn.execute(f"INSTALL {name}")
        conn.execute(f"LOAD {name}")
    except duckdb.Error as exc:
        tried.append(f"INSTALL failed: {str(exc).splitlines()[0]}")
        raise WarehouseUnavailable(
            f"DuckDB extension {name!r} cannot be loaded ({'; '.join(tried)}); install the "
            "ducklake extra (uv sync --extra ducklake) or see deploy/DUCKLAKE.md"
        ) from None


def _s3_secret(conn: duckdb.DuckDBPyConnection, environ: Mapping[str, str]) -> None:
    """An S3 secret from the standard AWS variables; with none set, DuckDB's own lookup."""
    found = {
        k: next((environ[v] for v in names if environ.get(v)), "") for k, names in _S3_ENV.items()
    }
    given = {k: v for k, v in found.items() if v}
    if not given:
        conn.execute("CREATE SECRET (TYPE s3, PROVIDER credential_chain)")
        return
    endpoint = given.pop("ENDPOINT", "")
    options = [f"{k} '{v}'" for k, v in given.items()]
    if endpoint:  # a local S3 (moto, MinIO): path-style URLs, TLS as the endpoint says
        host = endpoint.split("://", 1)[-1].rstrip("/")
        use_ssl = "true" if endpoint.startswith("https://") else "false"
        options += [f"ENDPOINT '{host}'", "URL_STYLE 'path'", f"USE_SSL {use_ssl}"]
    conn.execute(f"CREATE SECRET (TYPE s3, {', '.join(options)})")


def connect(
    url: WarehouseUrl,
    *,
    read_only: bool = False,
    config: Mapping[str, Any] | None = None,
    extension_directory: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> duckdb.DuckDBPyConnection:
    """A connection with the DuckLake catalog attached as the default database; a
    ``WarehouseUnavailable`` naming the catalog and the cause when it cannot be. ``environ``
    holds the S3 credentials of a data path on S3 (the AWS SDK's standard variables).

    Loading the extensions and attaching the catalog cost 0.3-1 s, so each process attaches
    once and hands out cursors (connections of their own, transactions apart) of that
    instance; closing one leaves the instance attached."""

    def key(writable: bool) -> tuple[object, ...]:
        settings = tuple(sorted((config or {}).items()))
        return (os.getpid(), url.catalog, url.data_path, writable, extension_directory, settings)

    with _INSTANCES_LOCK:
        # Reads may share the instance attached for writing.
        instance = _INSTANCES.get(key(True)) or (_INSTANCES.get(key(False)) if read_only else None)
        if instance is None:
            instance = _attach(url, read_only, config, extension_directory, environ)
            _INSTANCES[key(not read_only)] = instance
    cursor = instance.cursor()
    cursor.execute(f"USE {CATALOG}")
    cursor.execute(NO_PROGRESS_BAR)
    return cursor


def _attach(
    url: WarehouseUrl,
    read_only: bool,
    config: Mapping[str, Any] | None,
    extension_directory: str | None,
    environ: Mapping[str, str],
) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(config=dict(config or {}))
    try:
        conn.execute(NO_PROGRESS_BAR)
        for name in ("postgres_scanner", "ducklake", *(("httpfs",) if url.data_on_s3 else ())):
            load_extension(conn, name, extension_directory)
        if url.data_on_s3:
            _s3_secret(conn, environ)
        else:
            Path(url.data_path).mkdir(parents=True, exist_ok=True)
        catalog = url.catalog.replace("'", "''")
        data = url.data_path.replace("'", "''")
        mode = ", READ_ONLY" if read_only else ""
        attach = f"ATTACH 'ducklake:postgres:{catalog}' AS {CATALOG} (DATA_PATH '{data}'{mode})"
        for attempt in range(INIT_ATTEMPTS):
            try:
                conn.execute(attach)
                return conn
            except duckdb.Error as exc:
                cause = " ".join(str(exc).split())
                # Two processes creating a new catalog at once: one finds the other's tables.
                if "already exists" in cause and attempt < INIT_ATTEMPTS - 1:
                    time.sleep(random.uniform(0.1, 0.5))
                    continue
                error = WarehouseNotCreated if _NOT_CREATED in cause else WarehouseUnavailable
                raise error(f"DuckLake catalog {url}: {cause}") from None
        raise AssertionError("unreachable")
    except BaseException:
        conn.close()
        raise


def latest_snapshot(conn: duckdb.DuckDBPyConnection) -> int:
    """The catalog's latest snapshot id: one more with every commit, by any writer."""
    row = conn.execute(
        f"SELECT max(snapshot_id) FROM __ducklake_metadata_{CATALOG}.ducklake_snapshot"
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def data_files(conn: duckdb.DuckDBPyConnection) -> int:
    """Parquet data files the catalog's current snapshot reads (all tables)."""
    row = conn.execute(
        f"SELECT count(*) FROM __ducklake_metadata_{CATALOG}.ducklake_data_file "
        "WHERE end_snapshot IS NULL"
    ).fetchone()
    return int(row[0]) if row else 0


def compact(conn: duckdb.DuckDBPyConnection, keep: str = "0 seconds") -> tuple[int, int]:
    """Merge small adjacent data files, then delete the files that no snapshot younger than
    ``keep`` (an interval) reads: (data files before, after). Older snapshots go: time travel
    is not a feature here."""
    before = data_files(conn)
    conn.execute(f"CALL ducklake_merge_adjacent_files('{CATALOG}')")
    conn.execute(
        f"CALL ducklake_expire_snapshots('{CATALOG}', older_than => now() - INTERVAL '{keep}')"
    )
    conn.execute(f"CALL ducklake_cleanup_old_files('{CATALOG}', cleanup_all => true)")
    return before, data_files(conn)


def export(conn: duckdb.DuckDBPyConnection, out: Path, skip: Iterable[str] = ()) -> None:
    """Copy every schema and table of the catalog into a new DuckDB file ``out``."""
    target = str(out).replace("'", "''")
    conn.execute(f"ATTACH '{target}' AS export_target")
    try:
        conn.execute(f"COPY FROM DATABASE {CATALOG} TO export_target")
        for table in skip:
            conn.execute(f"DROP TABLE IF EXISTS export_target.main.{table}")
    finally:
        conn.execute("DETACH export_target")
