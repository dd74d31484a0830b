"""The schema revision of an MLflow SQL store, read without MLflow (which would migrate it):
its relation to the installed MLflow's head, and the checks of a database server's schema.
Also the read-only SQLite store MLflow is handed at the head revision."""

from __future__ import annotations

import re
import sqlite3
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import mlflow

if TYPE_CHECKING:
    # SQLAlchemy, alembic and MLflow's SQL store cost ~1.5 s to import: only SQL stores do.
    import sqlalchemy

from mlruns_assets.runtime.errors import TrackingStoreError

_MLFLOW_UPGRADE = (
    "upgrade the MLflow of mlruns-assets (uv lock --upgrade-package mlflow && uv sync)"
)


_REVISION_LINE = re.compile(r"""^(revision|down_revision)\s*=\s*(?:["'](\w+)["']|None)\s*$""", re.M)


@lru_cache(maxsize=1)
def revision_graph() -> dict[str, str | None]:
    """The installed MLflow's schema revisions and the revision each migrates from.

    Read from the ``revision = ...`` lines of its migration files rather than with alembic's
    ``ScriptDirectory``, which executes every migration module to learn the same two names:
    0.9 s on every command that opens an SQLite store, for ~10 ms of reading. A test compares
    this graph with alembic's, so a migration file this cannot read fails CI."""
    graph: dict[str, str | None] = {}
    versions = Path(mlflow.__file__).parent / "store" / "db_migrations" / "versions"
    for script in sorted(versions.glob("*.py")):
        found = dict(
            (name, value or None)
            for name, value in _REVISION_LINE.findall(script.read_text(encoding="utf-8"))
        )
        if "revision" in found:
            graph[str(found["revision"])] = found.get("down_revision")  # bounded: ~70 files
    return graph


@lru_cache(maxsize=1)
def installed_schema_head() -> str:
    """The alembic head revision of the installed MLflow: the schema it reads (and migrates
    every older store to)."""
    graph = revision_graph()
    heads = sorted(set(graph) - set(graph.values()))
    if len(heads) != 1:
        raise TrackingStoreError(f"the installed MLflow has {len(heads)} schema heads: {heads}")
    return heads[0]


def schema_relation(revision: str) -> Literal["current", "older", "newer"]:
    """A store's revision against the installed MLflow: its head, one it knows (older), or
    one it does not know (written by a newer MLflow)."""
    if revision == installed_schema_head():
        return "current"
    return "older" if revision in revision_graph() else "newer"


def schema_mismatch_message(store: str, revision: str) -> str:
    """One line: which revision the store has, which the installed MLflow reads, what to do."""
    head = installed_schema_head()
    if schema_relation(revision) == "newer":
        return (
            f"tracking store {store} has MLflow schema revision {revision}, newer than the "
            f"installed MLflow {mlflow.__version__} knows (its newest is {head}): "
            f"{_MLFLOW_UPGRADE}"
        )
    return (
        f"tracking store {store} has MLflow schema revision {revision}, older than the "
        f"installed MLflow {mlflow.__version__} reads ({head}); mlruns-assets never migrates a "
        "database server: point --tracking-uri at an upgraded copy (mlflow db upgrade on a "
        "copy) or read it with a matching MLflow"
    )


def sqlite_header(path: Path) -> bytes:
    """The first 100 bytes of an SQLite file (its header), read as plain bytes."""
    with path.open("rb") as fh:
        return fh.read(100)


# The first bytes of every SQLite database file.
SQLITE_MAGIC = b"SQLite format 3\x00"


def is_sqlite_file(path: Path) -> bool:
    """Whether the file starts with SQLite's header string."""
    return sqlite_header(path).startswith(SQLITE_MAGIC)


def sqlite_is_wal(path: Path) -> bool:
    """Whether the database is in WAL mode (header bytes 18-19 are 2)."""
    header = sqlite_header(path)
    return len(header) == 100 and header[18] == 2 and header[19] == 2


def sqlite_wal_unopened(path: Path) -> bool:
    """A WAL database without its ``-wal`` and ``-shm`` files: nobody has it open, and any
    SQLite connection, even ``mode=ro``, would create them."""
    return sqlite_is_wal(path) and not (
        Path(f"{path}-wal").exists() and Path(f"{path}-shm").exists()
    )


def _sqlite_ro_uri(path: Path, *, immutable: bool = False) -> str:
    return f"{path.resolve().as_uri()}?mode=ro" + ("&immutable=1" if immutable else "")


def _sqlite_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a query on an SQLite file, read without writing anything: ``mode=ro`` cannot
    write the database, and a WAL database nobody has open is read as ``immutable`` so that
    SQLite creates no ``-wal``/``-shm`` beside it either."""
    conn = sqlite3.connect(_sqlite_ro_uri(path, immutable=sqlite_wal_unopened(path)), uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def sqlite_schema_revision(path: Path) -> str:
    """The alembic revision of an MLflow SQLite store (nothing is written)."""
    header = sqlite_header(path)
    if not header:
        raise TrackingStoreError(f"tracking store {path} is an empty file, not an MLflow store")
    if not header.startswith(SQLITE_MAGIC):  # the header just read, not the file again
        raise TrackingStoreError(f"tracking store {path} is not an SQLite database")
    try:
        rows = _sqlite_rows(path, "SELECT version_num FROM alembic_version")
    except sqlite3.Error as exc:
        raise TrackingStoreError(
            f"tracking store {path} is not an MLflow tracking store ({exc})"
        ) from exc
    if len(rows) != 1:
        raise TrackingStoreError(
            f"tracking store {path} is not an MLflow tracking store ({len(rows)} alembic revisions)"
        )
    return str(rows[0][0])


def sqlite_has_default_experiment(path: Path) -> bool:
    """Whether experiment 0 exists (MLflow inserts it on opening a store that lacks it)."""
    try:
        return bool(_sqlite_rows(path, "SELECT 1 FROM experiments WHERE experiment_id = 0"))
    except sqlite3.Error:
        return False


def database_schema_revision(connection: sqlalchemy.Connection) -> str | None:
    """The alembic revision of an MLflow database (None: no ``alembic_version`` table)."""
    import sqlalchemy

    if not sqlalchemy.inspect(connection).has_table("alembic_version"):
        return None
    rows = connection.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).all()
    return ",".join(sorted(str(r[0]) for r in rows)) or None


def check_database_schema(engine: sqlalchemy.Engine, shown_uri: str) -> None:
    """Refuse a database that MLflow would write when it opens it: no MLflow tables (it would
    create them), another schema revision (it would migrate, or fail on a newer one), or no
    default experiment (it would insert it). Only reads."""
    import sqlalchemy

    try:
        with engine.connect() as conn:
            revision = database_schema_revision(conn)
            if revision is None:
                raise TrackingStoreError(
                    f"tracking store {shown_uri} is not an MLflow tracking database (no "
                    "alembic_version table)"
                )
            if revision != installed_schema_head():
                raise TrackingStoreError(schema_mismatch_message(shown_uri, revision))
            default = conn.execute(
                sqlalchemy.text("SELECT count(*) FROM experiments WHERE experiment_id = 0")
            ).scalar()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise TrackingStoreError(
            f"cannot read tracking store {shown_uri}: {' '.join(str(exc).split())}"
        ) from exc
    if not default:
        raise TrackingStoreError(
            f"tracking store {shown_uri} has no default experiment (id 0), which MLflow would "
            "create on opening it; mlruns-assets never writes a tracking store"
        )


def check_server_store(uri: str) -> None:
    """``check_database_schema`` of a database server (postgresql, mysql, mssql)."""
    import sqlalchemy

    shown = _hide_password(uri)
    try:
        engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    except (ImportError, sqlalchemy.exc.ArgumentError) as exc:
        raise TrackingStoreError(f"cannot open tracking store {shown}: {exc}") from exc
    try:
        check_database_schema(engine, shown)
    finally:
        engine.dispose()


def _hide_password(uri: str) -> str:
    import sqlalchemy

    try:
        return sqlalchemy.make_url(uri).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return uri
