"""The kept-connection SQLite storage: what Dagster's own storage reads from the same home, what
survives a kill -9, and which home a process writes to."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._cli.utils import get_possibly_temporary_instance_for_cli

from mlruns_assets.runtime.dagster_storage import (
    KeptConnectionEventLogStorage,
    KeptConnectionRunStorage,
)
from mlruns_assets.runtime.instance import INSTANCE_TEMPLATE, open_instance


def _materializations(instance: dg.DagsterInstance, name: str) -> list[str | None]:
    records = instance.fetch_materializations(dg.AssetKey(name), limit=100).records
    return sorted(r.partition_key or "" for r in records)


def _stock_home(home: Path, target: Path) -> Path:
    """A copy of ``home`` whose dagster.yaml uses Dagster's own SQLite storage."""
    shutil.copytree(home, target)
    config = yaml.safe_load((target / "dagster.yaml").read_text())
    del config["instance_class"]
    (target / "dagster.yaml").write_text(yaml.safe_dump(config))
    return target


def test_the_home_uses_the_kept_storage_and_dagsters_own_reads_what_it_wrote(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    with open_instance(home) as instance:
        assert isinstance(instance.event_log_storage, KeptConnectionEventLogStorage)
        assert isinstance(instance.run_storage, KeptConnectionRunStorage)
        for key in ("a", "b"):
            instance.report_runless_asset_event(dg.AssetMaterialization("x", partition=key))
    stock = _stock_home(home, tmp_path / "stock")
    with dg.DagsterInstance.from_config(str(stock)) as instance:
        assert not isinstance(instance.event_log_storage, KeptConnectionEventLogStorage)
        assert _materializations(instance, "x") == ["a", "b"]
        instance.report_runless_asset_event(dg.AssetMaterialization("x", partition="c"))
    shutil.copy(home / "dagster.yaml", stock / "dagster.yaml")
    with open_instance(stock) as instance:  # and back: the layout is Dagster's own
        assert isinstance(instance.event_log_storage, KeptConnectionEventLogStorage)
        assert _materializations(instance, "x") == ["a", "b", "c"]


def test_events_survive_a_kill_9_right_after_they_are_stored(tmp_path: Path) -> None:
    home = tmp_path / "home"
    script = textwrap.dedent(
        f"""
        import os, signal
        import dagster as dg
        from pathlib import Path
        from mlruns_assets.runtime.instance import open_instance
        instance = open_instance(Path({str(home)!r}))
        for key in ("a", "b", "c"):
            instance.report_runless_asset_event(dg.AssetMaterialization("x", partition=key))
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint of the WAL
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    with open_instance(home) as instance:
        assert _materializations(instance, "x") == ["a", "b", "c"]


def test_dagsters_temporary_instance_uses_the_kept_storage_in_its_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``dg check defs`` and ``dagster dev`` do without DAGSTER_HOME: a temporary folder,
    the project's ``dagster.yaml``."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    shutil.copy(INSTANCE_TEMPLATE, tmp_path / "dagster.yaml")
    monkeypatch.chdir(tmp_path)
    with get_possibly_temporary_instance_for_cli() as instance:
        assert isinstance(instance.event_log_storage, KeptConnectionEventLogStorage)
        instance.report_runless_asset_event(dg.AssetMaterialization("x", partition="t"))
        assert _materializations(instance, "x") == ["t"]
        folder = Path(instance.root_directory)
        assert folder.parent == tmp_path and (folder / "history" / "runs" / "index.db").exists()


def test_a_process_writes_each_home_it_opens_whatever_dagster_home_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "elsewhere"))
    first, second = tmp_path / "first", tmp_path / "second"
    with open_instance(first) as one, open_instance(second) as two:
        one.report_runless_asset_event(dg.AssetMaterialization("x", partition="1"))
        two.report_runless_asset_event(dg.AssetMaterialization("x", partition="2"))
    with open_instance(first) as one, open_instance(second) as two:
        assert (_materializations(one, "x"), _materializations(two, "x")) == (["1"], ["2"])
    assert not (tmp_path / "elsewhere").exists()
    assert (first / "history" / "runs" / "index.db").exists()
