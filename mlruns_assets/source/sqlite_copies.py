"""Private temporary copies of SQLite tracking stores whose schema differs from the installed
MLflow's: MLflow may migrate the copy, never the lab's file. One copy per store and process,
shared by every reader, removed by the last one (or at exit)."""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # SQLAlchemy, alembic and MLflow's SQL store cost ~1.5 s to import: only SQL stores do.
    pass

from mlruns_assets.runtime.errors import TrackingStoreError
from mlruns_assets.source.store_schema import _sqlite_ro_uri, sqlite_wal_unopened


def _file_signature(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class SqliteCopy:
    """A private temporary copy of an SQLite store (MLflow may migrate it; never the source)."""

    source: Path
    signature: tuple[object, ...]
    folder: Path
    seconds: float
    users: int = 0
    pid: int = field(default_factory=os.getpid)

    @property
    def path(self) -> Path:
        return self.folder / self.source.name

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.path}"

    @property
    def megabytes(self) -> float:
        return sum(f.stat().st_size for f in self.folder.iterdir()) / 1e6


class SqliteCopies:
    """The temporary copies of this process, one per source file and version: the
    ``TrackingStore``s of one store share it (one copy and one migration per process, not one
    per Dagster run), and the last one to close removes it; whatever is left goes at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: dict[Path, SqliteCopy] = {}
        self._live: list[SqliteCopy] = []
        atexit.register(self.remove_all)

    def acquire(self, source: Path) -> SqliteCopy:
        source = source.resolve()
        with self._lock:
            signature = (_file_signature(source), _file_signature(Path(f"{source}-wal")))
            copy = self._current.get(source)
            if copy is None or copy.signature != signature or not copy.path.exists():
                copy = make_sqlite_copy(source, signature)
                self._current[source] = copy  # bounded: one per source file
                self._live.append(copy)  # bounded: the copies in use by open TrackingStores
            copy.users += 1
            return copy

    def release(self, copy: SqliteCopy) -> None:
        with self._lock:
            copy.users -= 1
            if copy.users > 0:
                return
            if self._current.get(copy.source) is copy:
                del self._current[copy.source]
            if copy in self._live:
                self._live.remove(copy)
        _remove_copy(copy)

    def remove_all(self) -> None:
        with self._lock:
            copies, self._live = self._live, []
            self._current.clear()
        for copy in copies:
            _remove_copy(copy)


def make_sqlite_copy(source: Path, signature: tuple[object, ...]) -> SqliteCopy:
    """Copy an SQLite store into a new private folder without writing the source: SQLite's
    backup API from a ``mode=ro`` connection (a consistent snapshot while a writer works), or,
    for a WAL database nobody has open (no ``-wal``/``-shm``: opening it would create them), the
    file bytes themselves."""
    wal = Path(f"{source}-wal")
    size = source.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    tmp = Path(tempfile.gettempdir())
    free = shutil.disk_usage(tmp).free
    if free < 2 * size:  # the copy, and room for MLflow's migration of it
        raise TrackingStoreError(
            f"reading tracking store {source} needs a temporary copy of {size / 1e6:.0f} MB "
            f"(twice that free) but {tmp} has {free / 1e6:.0f} MB free: set TMPDIR to a "
            "larger disk"
        )
    folder = Path(tempfile.mkdtemp(prefix="mlruns-assets-store-"))  # mode 0700
    target = folder / source.name
    started = time.monotonic()
    try:
        if sqlite_wal_unopened(source):
            shutil.copyfile(source, target)
            if wal.exists():
                shutil.copyfile(wal, Path(f"{target}-wal"))
        else:
            src = sqlite3.connect(_sqlite_ro_uri(source), uri=True)
            try:
                dst = sqlite3.connect(target)
                try:
                    src.backup(dst)
                finally:
                    dst.close()
            finally:
                src.close()
    except (OSError, sqlite3.Error) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise TrackingStoreError(f"cannot copy tracking store {source}: {exc}") from exc
    return SqliteCopy(source, signature, folder, time.monotonic() - started)


def _remove_copy(copy: SqliteCopy) -> None:
    if copy.pid != os.getpid():  # a forked child: the copy is its parent's
        return
    _dispose_mlflow_engine(copy.uri)
    shutil.rmtree(copy.folder, ignore_errors=True)


def _dispose_mlflow_engine(uri: str) -> None:
    """Close MLflow's cached connections to a copy before it is removed."""
    import sys

    module = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    engines = getattr(getattr(module, "SqlAlchemyStore", None), "_engine_map", None)
    if isinstance(engines, dict):
        engine = engines.pop(uri, None)
        if engine is not None:
            engine.dispose()


def _remove_at_exit(folder: Path) -> None:
    pid = os.getpid()

    def remove() -> None:
        if os.getpid() == pid:
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove)


_SQLITE_COPIES = SqliteCopies()
