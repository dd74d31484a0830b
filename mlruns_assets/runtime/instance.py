"""The persistent Dagster instance: partition status lives here, so it must outlive every run."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from dagster._core.instance.ref import InstanceRef

from mlruns_assets.runtime.dagster_storage import KeptConnectionSqliteStorage

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


def storage_overrides(home: Path) -> dict[str, Any]:
    """The home's own folder for the kept-connection storage, which ``dagster.yaml`` locates
    through DAGSTER_HOME (as ``dagster dev`` and the daemon require): a process opening several
    homes must not depend on one environment variable. Other storages are left as configured."""
    config = yaml.safe_load((home / "dagster.yaml").read_text(encoding="utf-8")) or {}
    custom = (config.get("storage") or {}).get("custom") or {}
    if custom.get("class") != KeptConnectionSqliteStorage.__name__:
        return {}
    return {"storage": {"custom": {**custom, "config": {"base_dir": str(home)}}}}


def open_instance(home: Path) -> dg.DagsterInstance:
    home = prepare_dagster_home(home)
    ref = InstanceRef.from_dir(str(home), overrides=storage_overrides(home))
    return dg.DagsterInstance.from_ref(ref)
