"""Opening a tracking store for reading only, before MLflow sees it.

Nothing here writes to the tracking store. A tracking URI is a legacy ``mlruns`` folder, a
``sqlite:///`` database, a ``postgresql://``/``mysql://``/``mssql://`` database or an
``http(s)://`` tracking server.

MLflow itself writes when it opens a store: its SQL store migrates an older schema in place
(the lab's own, older MLflow then cannot open the file) and creates the tables of an empty
database; its file store creates ``.trash`` (and a whole store in a missing folder). So every
store is checked before MLflow sees it (``open_store``):

- SQLite: the alembic revision is read with ``sqlite3`` in ``mode=ro``. At the installed MLflow's
  head revision MLflow gets a read-only engine (``_ReadOnlySqliteStore``: every connection is
  ``mode=ro``, so a write fails instead of happening). Otherwise (older or newer schema, or a
  WAL database that a read would give ``-wal``/``-shm`` files) MLflow reads a private temporary
  copy (``_SQLITE_COPIES``), which it may migrate; the copy is removed when the last
  ``TrackingStore`` using it is closed or collected, or at exit.
- A database server: the revision is read with SQLAlchemy; a different revision is refused (a
  server database is never copied and never migrated).
- A folder: it must hold an MLflow experiment (``<id>/meta.yaml``); MLflow reads it through
  ``_ReadOnlyFileStore``, which never creates ``.trash``."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, unquote, urlparse

import yaml
from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE
from mlflow.store.tracking.file_store import FileStore
from mlflow.tracking import MlflowClient

if TYPE_CHECKING:
    # SQLAlchemy, alembic and MLflow's SQL store cost ~1.5 s to import: only SQL stores do.
    import sqlalchemy

from mlruns_assets.runtime.errors import TrackingStoreError
from mlruns_assets.source.run_data import is_file_store
from mlruns_assets.source.sqlite_copies import _SQLITE_COPIES, SqliteCopy, _remove_at_exit
from mlruns_assets.source.store_schema import (
    _sqlite_ro_uri,
    check_server_store,
    installed_schema_head,
    is_sqlite_file,
    schema_mismatch_message,
    schema_relation,
    sqlite_has_default_experiment,
    sqlite_schema_revision,
    sqlite_wal_unopened,
)

_SERVER_SCHEMES = ("postgresql", "mysql", "mssql")
_READ_ONLY_SQLITE_SCHEME = "mlruns-assets-sqlite"
_READ_ONLY_FILE_SCHEME = "mlruns-assets-file"

StoreAccess = Literal["read-only", "temporary copy", "server", "file store", "reopened"]


def _scheme(uri: str) -> str:
    """The database kind of a URI: ``postgresql+psycopg2://`` -> ``postgresql``."""
    return urlparse(uri).scheme.split("+", 1)[0].lower()


def normalize_tracking_uri(uri: str) -> str:
    """Check that the store exists and is an MLflow store (MLflow would create one: an empty
    database gets MLflow's tables, an empty folder a ``.trash`` and a default experiment), and
    enable file stores.

    MLflow >= 3.14 refuses a file store unless ``MLFLOW_ALLOW_FILE_STORE=true``; we set it
    for the user because reading legacy ``mlruns`` folders is the point of this tool.
    """
    parsed = urlparse(uri)
    if is_file_store(uri):
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else uri).expanduser()
        if path.is_file() and is_sqlite_file(path):
            raise TrackingStoreError(
                f"tracking store {uri} is an SQLite file, not an mlruns folder: "
                f"pass it as sqlite:///{path.resolve()}"
            )
        if not path.is_dir():
            raise TrackingStoreError(f"tracking store {uri} is not an existing mlruns folder")
        check_file_store(path)
        # MLflow's own switch (it reads the environment when a store is opened).
        MLFLOW_ALLOW_FILE_STORE.set("true")  # type: ignore[no-untyped-call]
        return str(path.resolve())
    if parsed.scheme == "sqlite":
        if not uri.startswith("sqlite:///"):  # sqlite://x.db: SQLAlchemy reads a host "x.db"
            raise TrackingStoreError(
                f"tracking store {uri}: a SQLite URI has three slashes before a relative path "
                "(sqlite:///mlflow.db) and four before an absolute one (sqlite:////data/mlflow.db)"
            )
        db_path = Path(uri[len("sqlite:///") :])
        if not db_path.is_file():
            raise TrackingStoreError(f"tracking store {uri}: no such SQLite file {db_path}")
        return uri
    if _scheme(uri) in _SERVER_SCHEMES:
        return uri
    if parsed.scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10) as resp:
                resp.read()
        except OSError as exc:
            raise TrackingStoreError(f"tracking server {uri} is unreachable: {exc}") from exc
        return uri.rstrip("/")
    raise TrackingStoreError(
        f"unsupported tracking URI {uri} (use a folder, sqlite:///, postgresql://, mysql:// "
        "or http)"
    )


# --------------------------------------------------------------------------- file stores
def check_file_store(folder: Path) -> None:
    """Refuse a folder that is not an MLflow file store: one holding no experiment folder
    (``<id>/meta.yaml`` with an ``experiment_id``, or a deleted one in ``.trash``). Reads only
    the folder listing and the first experiment's ``meta.yaml``."""
    with os.scandir(folder) as entries:
        empty = next(entries, None) is None
    if empty:
        raise TrackingStoreError(
            f"tracking store {folder} is an empty folder, not an MLflow tracking store"
        )
    parents = [folder, folder / FileStore.TRASH_FOLDER_NAME]
    for parent in parents:
        if not parent.is_dir():
            continue
        with os.scandir(parent) as entries:
            for entry in entries:
                if entry.is_dir() and _is_experiment_meta(Path(entry.path) / "meta.yaml"):
                    return
    hint = ""
    if (folder / "mlflow.db").is_file():  # a SQLite store's folder given for the store itself
        hint = f"; for the SQLite store in it use sqlite:///{(folder / 'mlflow.db').resolve()}"
    raise TrackingStoreError(
        f"tracking store {folder} is not an MLflow tracking store (no experiment folder with "
        f"a meta.yaml, such as 0/meta.yaml){hint}"
    )


def _is_experiment_meta(meta: Path) -> bool:
    try:
        content = yaml.safe_load(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(content, dict) and "experiment_id" in content


class _ReadOnlyFileStore(FileStore):
    """MLflow's file store without its one write on opening: ``FileStore.__init__`` creates
    ``<root>/.trash`` when it is missing (a store copied without empty folders). Here the trash
    folder is the store's own ``.trash`` when it exists and an empty private folder otherwise,
    so ``__init__`` finds it and creates nothing (the root exists: ``check_file_store``)."""

    @property
    def trash_folder(self) -> str:
        own = os.path.join(self.root_directory, FileStore.TRASH_FOLDER_NAME)
        return own if os.path.isdir(own) else str(_empty_folder())

    @trash_folder.setter
    def trash_folder(self, value: str) -> None:
        """``FileStore.__init__`` assigns the folder; the getter derives it instead."""


@lru_cache(maxsize=1)
def _private_empty_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="mlruns-assets-empty-"))
    _remove_at_exit(folder)
    return folder


def _empty_folder() -> Path:
    """An empty private folder of this process (made again if a temp cleaner removed it)."""
    folder = _private_empty_folder()
    if not folder.is_dir():
        _private_empty_folder.cache_clear()
        folder = _private_empty_folder()
    return folder


def _build_file_store(store_uri: str, artifact_uri: str | None = None) -> _ReadOnlyFileStore:
    root = _path_of_wrapped(store_uri)
    return _ReadOnlyFileStore(root, root)  # type: ignore[no-untyped-call]


def _wrapped_uri(scheme: str, path: str) -> str:
    """A URI of one of our schemes carrying a local path (any OS) unchanged."""
    return f"{scheme}:///{quote(path, safe='')}"


def _path_of_wrapped(uri: str) -> str:
    return unquote(urlparse(uri).path.removeprefix("/"))


@contextmanager
def _quiet_migrations() -> Iterator[None]:
    """MLflow and alembic log every migration step of a copy at INFO: not the user's news."""
    loggers = [logging.getLogger(n) for n in ("alembic", "mlflow.store.db.utils")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@dataclass
class OpenedStore:
    """What MLflow was pointed at for one tracking store, and how it is released."""

    client: MlflowClient
    access: StoreAccess
    detail: str
    copy: SqliteCopy | None = None


def reopen_store(client_uri: str) -> MlflowClient:
    """A client over what ``open_store`` chose in another process (its client's URI: the
    read-only scheme, a temporary copy, a server), for a worker of that process: the checks
    were made there, and that process keeps any temporary copy alive."""
    _register_read_only_schemes()
    return MlflowClient(tracking_uri=client_uri)


def open_store(tracking_uri: str) -> OpenedStore:
    """An ``MlflowClient`` over the (normalized) tracking URI that cannot write the store."""
    if is_file_store(tracking_uri):
        if _register_read_only_schemes():
            client = MlflowClient(tracking_uri=_wrapped_uri(_READ_ONLY_FILE_SCHEME, tracking_uri))
        elif os.path.isdir(os.path.join(tracking_uri, FileStore.TRASH_FOLDER_NAME)):
            client = MlflowClient(tracking_uri=tracking_uri)  # FileStore then writes nothing
        else:
            raise TrackingStoreError(
                f"tracking store {tracking_uri} has no .trash folder, which this MLflow would "
                "create on opening it"
            )
        return OpenedStore(client, "file store", "read in place; nothing is created")
    if urlparse(tracking_uri).scheme == "sqlite":
        return _open_sqlite(tracking_uri, Path(tracking_uri[len("sqlite:///") :]))
    if _scheme(tracking_uri) in _SERVER_SCHEMES:
        check_server_store(tracking_uri)
        return OpenedStore(
            MlflowClient(tracking_uri=tracking_uri), "server", f"schema {installed_schema_head()}"
        )
    return OpenedStore(MlflowClient(tracking_uri=tracking_uri), "server", "tracking server")


def _open_sqlite(tracking_uri: str, path: Path) -> OpenedStore:
    revision = sqlite_schema_revision(path)
    relation = schema_relation(revision)
    wal_unopened = sqlite_wal_unopened(path)
    if (
        relation == "current"
        and not wal_unopened
        and sqlite_has_default_experiment(path)
        and _register_read_only_schemes()
    ):
        try:
            client = MlflowClient(
                tracking_uri=_wrapped_uri(_READ_ONLY_SQLITE_SCHEME, str(path.resolve()))
            )
            return OpenedStore(client, "read-only", f"schema {revision}, opened mode=ro")
        except Exception:  # e.g. MLflow wanted to write: read a copy instead
            pass
    copy = _SQLITE_COPIES.acquire(path)
    try:
        with _quiet_migrations():
            client = MlflowClient(tracking_uri=copy.uri)
    except Exception as exc:
        _SQLITE_COPIES.release(copy)
        if relation == "newer":
            raise TrackingStoreError(schema_mismatch_message(tracking_uri, revision)) from exc
        raise TrackingStoreError(
            f"cannot read tracking store {tracking_uri} (schema {revision}) through a "
            f"temporary copy: {' '.join(str(exc).split())}"
        ) from exc
    if relation != "current":
        why = f"{relation} schema {revision}"
    elif wal_unopened:
        why = "a WAL database nobody has open (a read would create its -wal and -shm files)"
    else:
        why = "MLflow would write on opening it"
    return OpenedStore(client, "temporary copy", f"{why}, read from {copy.path}", copy)


# --------------------------------------------------------------------------- SQLite access
@lru_cache(maxsize=1)
def _read_only_sqlite_store_class() -> type[Any]:
    """MLflow's SQL store over an engine whose every connection is ``mode=ro`` (imported when
    first needed: the SQL store costs ~1.5 s to import)."""
    import sqlalchemy
    from mlflow.store.db.utils import create_sqlalchemy_engine
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    class _ReadOnlySqliteStore(SqlAlchemyStore):
        """Builds its engine here instead of MLflow's cache, so the read-only engine of a file
        never serves a writer of the same file in this process."""

        _read_only_engines: dict[str, sqlalchemy.Engine] = {}
        _engines_lock = threading.Lock()

        @classmethod
        def _get_or_create_engine(cls, db_uri: str) -> sqlalchemy.Engine:
            with cls._engines_lock:
                engine = cls._read_only_engines.get(db_uri)
                if engine is None:
                    # MLflow's own engine (with its SQLite functions), made read-only below
                    engine = create_sqlalchemy_engine(db_uri)  # type: ignore[no-untyped-call]
                    read_only = _sqlite_ro_uri(Path(db_uri[len("sqlite:///") :]))

                    def connect_read_only(
                        dialect: object, record: object, cargs: list[Any], cparams: dict[str, Any]
                    ) -> None:
                        cargs[:] = [read_only]
                        cparams["uri"] = True

                    sqlalchemy.event.listen(engine, "do_connect", connect_read_only)
                    # bounded: one engine per SQLite store read in this process
                    cls._read_only_engines[db_uri] = engine
                return engine

    return _ReadOnlySqliteStore


def _build_sqlite_store(store_uri: str, artifact_uri: str | None = None) -> Any:
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH

    path = _path_of_wrapped(store_uri)
    store_class = _read_only_sqlite_store_class()
    store = store_class(f"sqlite:///{path}", artifact_uri or DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)
    if store.engine is not store_class._read_only_engines.get(store.db_uri):
        # A later MLflow that no longer builds its engine in _get_or_create_engine.
        raise TrackingStoreError("MLflow's SQL store did not take the read-only engine")
    return store


@lru_cache(maxsize=1)
def _register_read_only_schemes() -> bool:
    """Teach MLflow's tracking-store registry the two read-only schemes (False: this MLflow
    has no such registry, and SQLite stores are read through a copy)."""
    try:
        from mlflow.tracking._tracking_service.utils import _register
    except ImportError:
        return False
    _register(_READ_ONLY_SQLITE_SCHEME, _build_sqlite_store)  # type: ignore[no-untyped-call]
    _register(_READ_ONLY_FILE_SCHEME, _build_file_store)  # type: ignore[no-untyped-call]
    return True
