"""A throwaway Postgres cluster on loopback, started by deploy/loopback.py's own ``Stack`` (a
fresh ``initdb`` in a temporary folder, run as the ``postgres`` user when root), and the
DuckLake warehouses the tests make in it: one Postgres database each."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOOPBACK = Path(__file__).resolve().parents[2] / "deploy" / "loopback.py"


def loopback() -> Any:
    """deploy/loopback.py as a module (deploy/ is no package)."""
    if "mlruns_assets_loopback" not in sys.modules:
        spec = importlib.util.spec_from_file_location("mlruns_assets_loopback", LOOPBACK)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while defining
        spec.loader.exec_module(module)
    return sys.modules["mlruns_assets_loopback"]


@dataclass
class Postgres:
    """The running cluster: its port, and new databases on demand."""

    stack: Any
    port: int

    def dsn(self, dbname: str) -> str:
        return f"dbname={dbname} host=127.0.0.1 port={self.port} user=postgres"

    def create_database(self, dbname: str) -> str:
        """A new, empty database; its libpq connection string."""
        with contextlib.closing(self.stack.pg_connect("postgres")) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{dbname}"')
        return self.dsn(dbname)

    def warehouse(self, dbname: str, data_path: Path) -> str:
        """``--warehouse`` of a new DuckLake catalog in its own database."""
        return f"ducklake:postgres:{self.create_database(dbname)}?data_path={data_path}"


@contextlib.contextmanager
def loopback_postgres() -> Iterator[Postgres]:
    """Postgres on 127.0.0.1 and a free port, stopped (fast shutdown) and its folder removed on
    exit. The folder is a new one right in the temporary folder: run as root, it is handed to the
    ``postgres`` user, who must reach it (pytest's own folders are private to root)."""
    workdir = Path(tempfile.mkdtemp(prefix="mlruns-assets-postgres-"))
    stack = loopback().Stack(workdir)
    stack.env = dict(os.environ)
    try:
        stack.start_postgres()
        yield Postgres(stack, stack.ports["postgres"])
    finally:
        stack.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


def postgres_missing() -> str | None:
    """Why no cluster can start here, or None."""
    try:
        loopback().postgres_bin()
    except RuntimeError as exc:
        return str(exc)
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed (uv sync --extra ducklake installs it with dev)"
    return None
