"""The code location: its configuration from the environment, the definitions it builds for a
demo store, and the web server serving them on a persistent instance after a headless extract."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import dagster as dg
import pytest

import mlruns_assets.definitions
from mlruns_assets.cli import main
from mlruns_assets.demo import DemoStore, write_demo_store
from mlruns_assets.extraction import asset_of_table, assets_for_kind
from mlruns_assets.project import ENV_PREFIX, ProjectConfig

SERVER_START_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    return write_demo_store(
        tmp_path_factory.mktemp("demo") / "store", backend="sqlite", runs=4, bootstraps=20
    )


def _clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}


@contextlib.contextmanager
def definitions_module(env: dict[str, str]) -> Iterator[ModuleType]:
    """``mlruns_assets.definitions`` imported afresh under ``env`` (the only MLRUNS_ASSETS_*
    variables), reloaded again afterwards under the original environment."""
    with pytest.MonkeyPatch.context() as mp:
        for key in os.environ:
            if key.startswith(ENV_PREFIX):
                mp.delenv(key)
        for key, value in env.items():
            mp.setenv(key, value)
        try:
            yield importlib.reload(mlruns_assets.definitions)
        finally:
            mp.undo()
            importlib.reload(mlruns_assets.definitions)


# --------------------------------------------------------------------------- (a) configuration


def test_config_round_trips_through_the_environment(tmp_path: Path) -> None:
    full = ProjectConfig(
        tracking_uri="sqlite:////data/mlflow.db",
        database=str(tmp_path / "results.duckdb"),
        experiments=("Classification", "Imputation"),
        kinds={"Classification": "classification", "Pupil": "generic"},
        admit_failed_runs=True,
        subject_map=str(tmp_path / "map.csv"),
        max_memory_gb=2.5,
        heartbeat_seconds=7.0,
    )
    minimal = ProjectConfig(tracking_uri="/data/mlruns", database="results.duckdb")
    for config in (full, minimal):
        env = config.to_env()
        assert all(k.startswith(ENV_PREFIX) and isinstance(v, str) for k, v in env.items())
        assert ProjectConfig.from_env(env) == config
    assert ProjectConfig.from_env(minimal.to_env()).admit_failed_runs is False  # type: ignore[union-attr]
    assert ProjectConfig.from_env(minimal.to_env()).subject_map is None  # type: ignore[union-attr]


def test_experiment_names_with_commas_round_trip_and_hand_written_lists_still_parse() -> None:
    config = ProjectConfig(
        tracking_uri="/data/mlruns",
        database="results.duckdb",
        experiments=("Classification, v2", "a=b"),
        kinds={"Classification, v2": "classification", "a=b": "imputation"},
    )
    assert ProjectConfig.from_env(config.to_env()) == config
    by_hand = ProjectConfig.from_env(
        {
            f"{ENV_PREFIX}TRACKING_URI": "/data/mlruns",
            f"{ENV_PREFIX}DB": "results.duckdb",
            f"{ENV_PREFIX}EXPERIMENTS": "Classification, Imputation",
            f"{ENV_PREFIX}KINDS": "Pupil=generic",
        }
    )
    assert by_hand is not None
    assert by_hand.experiments == ("Classification", "Imputation")
    assert by_hand.kinds == {"Pupil": "generic"}


def test_no_environment_means_no_config_and_empty_definitions() -> None:
    assert ProjectConfig.from_env({}) is None
    assert ProjectConfig.from_env({f"{ENV_PREFIX}TRACKING_URI": "sqlite:///x.db"}) is None
    assert ProjectConfig.from_env({f"{ENV_PREFIX}DB": "x.duckdb"}) is None
    assert (
        ProjectConfig.from_env({f"{ENV_PREFIX}TRACKING_URI": " ", f"{ENV_PREFIX}DB": "x"}) is None
    )
    with definitions_module({}) as module:
        defs = module.defs
        assert isinstance(defs, dg.Definitions)
        assert not list(defs.assets or []) and not list(defs.sensors or [])
        assert not list(defs.jobs or []) and not list(defs.asset_checks or [])
        assert defs.resolve_all_asset_keys() == []
        dg.Definitions.validate_loadable(defs)


# --------------------------------------------------------------------------- (b) definitions


def test_definitions_for_a_demo_store(demo: DemoStore, tmp_path: Path) -> None:
    config = ProjectConfig(
        tracking_uri=demo.tracking_uri,
        database=str(tmp_path / "results.duckdb"),
        subject_map=str(demo.subject_map_path),
    )
    with definitions_module(config.to_env()) as module:
        defs: dg.Definitions = module.defs
        dg.Definitions.validate_loadable(defs)

        keys = {tuple(k.path) for k in defs.resolve_all_asset_keys()}
        # One asset per group of tables that one read fills and one transaction commits.
        assert keys == {
            ("classification", "runs"),
            ("classification", "stratos"),
            ("imputation", "runs"),
            ("imputation", "preprocessed_signals"),
        }

        graph = defs.resolve_asset_graph()
        for key in keys:
            partitions = graph.get(dg.AssetKey(list(key))).partitions_def
            assert isinstance(partitions, dg.DynamicPartitionsDefinition)
            assert partitions.name == f"{key[0]}_runs"

        jobs = {j.name for j in defs.jobs or []}
        assert jobs == {"classification_extraction_job", "imputation_extraction_job"}
        sensors = {s.name: s for s in defs.sensors or []}
        assert set(sensors) == {
            "classification_discovery_sensor",
            "imputation_discovery_sensor",
            "extraction_stall_sensor",
        }
        for slug in ("classification", "imputation"):
            assert sensors[f"{slug}_discovery_sensor"].job_name == f"{slug}_extraction_job"
            job = defs.resolve_job_def(f"{slug}_extraction_job")
            assert {tuple(k.path) for k in job.asset_layer.executable_asset_keys} == {
                k for k in keys if k[0] == slug
            }

        checks = {(tuple(c.asset_key.path), c.name) for c in graph.asset_check_keys}
        for slug in ("classification", "imputation"):
            for table, asset in asset_of_table(slug).items():
                assert ((slug, asset), f"{table}_is_valid") in checks
        assert (("classification", "stratos"), "calibration_curves_is_valid") in checks
        assert (("classification", "runs"), "metric_history_is_valid") in checks
        assert {
            (("classification", "runs"), "synthetic_runs_absent"),
            (("classification", "stratos"), "no_original_subject_codes"),
            (("imputation", "runs"), "synthetic_runs_absent"),
        } <= checks

        resources = defs.resources or {}
        assert resources["mlflow_tracking"].tracking_uri == demo.tracking_uri
        assert resources["mlflow_tracking"].subject_map == str(demo.subject_map_path)
        assert resources["warehouse"].database == config.database


# --------------------------------------------------------------------------- (c) web server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body["errors"]
    return body["data"]


WORKSPACE_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } }
} } } }
"""

ASSETS_QUERY = """
query {
  assetNodes { assetKey { path } }
  %s
}
"""

PARTITIONS_FRAGMENT = """
  %s: assetNodeOrError(assetKey: {path: ["%s", "runs"]}) {
    __typename
    ... on AssetNode {
      partitionKeys
      assetPartitionStatuses {
        __typename
        ... on DefaultPartitionStatuses {
          materializedPartitions failedPartitions unmaterializedPartitions materializingPartitions
        }
      }
    }
  }
"""


def _wait_until_loaded(proc: subprocess.Popen, port: int, log: Path) -> list[dict]:
    """Poll until the server answers and its code location finished loading."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    last_error: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"dagster-webserver exited with {proc.returncode}:\n{log.read_text()[-4000:]}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                pass
            workspace = _graphql(port, WORKSPACE_QUERY)["workspaceOrError"]
            entries = workspace.get("locationEntries") or []
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return entries
            last_error = workspace
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last_error = exc
        time.sleep(0.5)
    pytest.fail(
        f"dagster-webserver did not load within {SERVER_START_TIMEOUT:.0f} s "
        f"(last: {last_error}):\n{log.read_text()[-4000:]}"
    )


def _stop(proc: subprocess.Popen) -> None:
    """Terminate the server and its code server (the process group this test started)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # a code server left behind by the webserver


def test_webserver_shows_the_extracted_partitions(demo: DemoStore, tmp_path: Path) -> None:
    database, home = tmp_path / "results.duckdb", tmp_path / "home"
    config = ProjectConfig(
        tracking_uri=demo.tracking_uri,
        database=str(database),
        subject_map=str(demo.subject_map_path),
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(
            [
                "extract",
                "--tracking-uri",
                demo.tracking_uri,
                "--db",
                str(database),
                "--subject-map",
                str(demo.subject_map_path),
                "--dagster-home",
                str(home),
            ]
        )
    assert code == 0, out.getvalue()
    assert (home / "dagster.yaml").is_file()

    port = _free_port()
    log = tmp_path / "webserver.log"
    env = {**_clean_environ(), **config.to_env(), "DAGSTER_HOME": str(home)}
    cmd = [sys.executable, "-m", "dagster_webserver", "-m", "mlruns_assets.definitions"]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*cmd, "-h", "127.0.0.1", "-p", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so the code server stops with it
        )
    try:
        entries = _wait_until_loaded(proc, port, log)
        assert [e["locationOrLoadError"]["__typename"] for e in entries] == ["RepositoryLocation"]

        query = ASSETS_QUERY % (
            PARTITIONS_FRAGMENT % ("classification", "classification")
            + PARTITIONS_FRAGMENT % ("imputation", "imputation")
        )
        data = _graphql(port, query)
        listed = {tuple(n["assetKey"]["path"]) for n in data["assetNodes"]}
        expected = {("classification", a.name) for a in assets_for_kind("classification")}
        expected |= {("imputation", a.name) for a in assets_for_kind("imputation")}
        assert listed == expected

        for slug, run_ids in (
            ("classification", demo.good_run_ids),
            ("imputation", demo.imputation_run_ids),
        ):
            node = data[slug]
            assert node["__typename"] == "AssetNode", node
            assert sorted(node["partitionKeys"]) == sorted(run_ids)
            statuses = node["assetPartitionStatuses"]
            assert statuses["__typename"] == "DefaultPartitionStatuses"
            assert sorted(statuses["materializedPartitions"]) == sorted(run_ids)
            assert statuses["failedPartitions"] == []
            assert statuses["unmaterializedPartitions"] == []
            assert statuses["materializingPartitions"] == []
    finally:
        _stop(proc)
    assert proc.returncode is not None
