"""Shared fixtures: real MLflow demo stores on disk, extracted once per session."""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import pytest

from mlruns_assets.cli.main import main
from mlruns_assets.demo.store import DemoStore
from mlruns_assets_tests.support.bad_runs import BadDemoStore, write_bad_demo_store

# The case study published with the STRATOS paper (894 patients), copied from the project's
# shared reference so the tests need nothing outside the repository.
CASE_STUDY = Path(__file__).resolve().parent / "data" / "stratos_case_study.txt"


StoreT = TypeVar("StoreT", bound=DemoStore)


@dataclass(frozen=True)
class Extracted(Generic[StoreT]):
    """A demo store and the result of one ``mlruns-assets extract`` over it."""

    store: StoreT
    database: Path
    dagster_home: Path
    exit_code: int
    output: str


def run_cli(*args: str) -> tuple[int, str]:
    """``mlruns-assets ARGS`` in this process: (exit code, stdout + stderr)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(args))
    return code, out.getvalue()


def _extract_args(store: DemoStore, database: Path, home: Path) -> list[str]:
    return [
        "extract",
        "--tracking-uri",
        store.tracking_uri,
        "--db",
        str(database),
        "--dagster-home",
        str(home),
    ]


def extract_command(store: DemoStore, database: Path, home: Path, *extra: str) -> list[str]:
    """``mlruns-assets extract`` of the store with its subject map, as a child process's argv."""
    return [
        sys.executable,
        "-m",
        "mlruns_assets.cli",
        *_extract_args(store, database, home),
        "--subject-map",
        str(store.subject_map_path),
        *extra,
    ]


def run_extract(store: StoreT, database: Path, home: Path, *extra: str) -> Extracted[StoreT]:
    """``mlruns-assets extract`` of the store in this process (no subject map unless in extra)."""
    code, output = run_cli(*_extract_args(store, database, home), *extra)
    return Extracted(store, database, home, code, output)


@pytest.fixture(scope="session")
def bad_store_extracted(tmp_path_factory: pytest.TempPathFactory) -> Extracted[BadDemoStore]:
    """The demo store with every kind of bad run (SQLite backend), extracted with a subject map."""
    root = tmp_path_factory.mktemp("bad_store")
    store = write_bad_demo_store(root / "store", backend="sqlite", runs=8, bootstraps=40)
    return run_extract(
        store, root / "results.duckdb", root / "home", "--subject-map", str(store.subject_map_path)
    )
