"""The persistent Dagster instance: partition status lives here, so it must outlive every run."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg

INSTANCE_TEMPLATE = Path(__file__).resolve().parent.parent / "dagster.yaml"


def default_dagster_home(database: Path) -> Path:
    """``.dagster/<database file name>/`` beside the database: the checkpoint travels with the
    results, and two databases in one folder never share an instance."""
    database = database.expanduser().resolve()
    return database.parent / ".dagster" / database.name


def prepare_dagster_home(home: Path) -> Path:
    """Create the home with this project's ``dagster.yaml`` unless it already has one."""
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(INSTANCE_TEMPLATE, home / "dagster.yaml")
    return home


def open_instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(prepare_dagster_home(home)))
