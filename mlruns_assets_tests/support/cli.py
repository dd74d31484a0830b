"""The ``mlruns-assets`` command from the tests: in this process, or as a child process's argv."""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from mlruns_assets.cli.main import main
from mlruns_assets.demo.store import DemoStore

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
