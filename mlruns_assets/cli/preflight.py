"""Checks before any work, shared by ``extract``, ``status`` and ``ui``: each failure is one line
naming the thing and the cause (a ``UsageError``: exit 2), and nothing has been written yet."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mlruns_assets.runtime.errors import ExtractionError, UsageError
from mlruns_assets.runtime.guardrails import LowDiskSpace, check_free_disk
from mlruns_assets.runtime.settings import Settings
from mlruns_assets.source.tracking import ExperimentRef, TrackingStore
from mlruns_assets.transform.subjects import load_subject_map
from mlruns_assets.warehouse.duckdb_writer import database_file_problem
from mlruns_assets.warehouse.ducklake import WarehouseNotCreated
from mlruns_assets.warehouse.identity import read_database_id


def check_database_path(database: Path) -> None:
    """The database must be a DuckDB file or not exist yet, in a folder this process can write
    (tried, not inferred from permission bits: /proc or a read-only mount pass those)."""
    folder = database.expanduser().absolute().parent
    blocking = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise UsageError(f"database path {database}: {blocking} is a file, not a folder")
    if database.is_dir():
        raise UsageError(f"database path {database} is a folder; give a file path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UsageError(f"database folder {folder} is not writable: {exc.strerror}") from None
    if database.exists():
        problem = database_file_problem(database)
        if problem or not os.access(database, os.W_OK):
            raise UsageError(f"database {database}: {problem or 'not writable'}")


def check_ducklake(config: Settings, *, dry_run: bool) -> None:
    """The DuckLake catalog answers, with its extensions loaded (a ``WarehouseUnavailable``
    naming the catalog and the cause otherwise): opened for writing, which creates it, unless
    this is a dry run."""
    from mlruns_assets.defs.resources import build_warehouse

    warehouse = build_warehouse(config)
    try:
        with warehouse.get_connection(read_only=dry_run) as conn:
            read_database_id(conn)
    except WarehouseNotCreated:  # it answers; nothing extracted into it yet
        return


def preflight(
    config: Settings, home: Path, *, dry_run: bool = False
) -> tuple[TrackingStore, list[ExperimentRef]]:
    """Checks before any work: the database path is writable (not for a dry run, which writes
    nothing) and holds a DuckDB database or nothing; the disks of the database and the Dagster
    home have the minimum free space; the subject map reads; the tracking store exists and lists
    the experiments; every ``--kind`` names one of them."""
    database = Path(config.database)
    if config.warehouse:
        check_ducklake(config, dry_run=dry_run)
    elif not dry_run:
        check_database_path(database)
        try:
            check_free_disk([database, home], int(config.min_free_disk_gb * 1e9))
        except LowDiskSpace as exc:
            raise UsageError(f"{exc} (--min-free-disk-gb)") from exc
    elif (
        not config.warehouse
        and Path(config.database).exists()
        and (problem := database_file_problem(Path(config.database)))
    ):
        raise UsageError(f"database {config.database}: {problem}")
    if config.subject_map:
        try:
            load_subject_map(config.subject_map)
        except (ExtractionError, OSError, ValueError) as exc:
            raise UsageError(str(exc)) from None
    try:
        store = TrackingStore(config.tracking_uri)
        experiments = store.experiments(config.experiments or None)
    except RuntimeError as exc:
        raise UsageError(str(exc)) from exc
    unknown = sorted(set(config.kinds) - {e.name for e in experiments})
    if unknown:
        names = ", ".join(sorted(e.name for e in experiments)) or "none"
        raise UsageError(
            f"--kind names unknown experiment(s) {', '.join(unknown)}; the store has: {names}"
        )
    return store, experiments
