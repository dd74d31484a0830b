"""The code location: its configuration from the environment, the definitions it builds for a
demo store, and the web server serving them on a persistent instance after a headless extract."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import dagster as dg
import mlflow
import pytest

from mlruns_assets.cli.main import main
from mlruns_assets.demo.store import DemoStore, write_demo_store
from mlruns_assets.runtime.settings import ENV_PREFIX, Kind, Settings
from mlruns_assets.warehouse.catalog import asset_of_table, assets_for_kind
from mlruns_assets_tests.support.webserver import clean_environ, graphql, running_webserver


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
    variables), forgotten again afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        for key in os.environ:
            if key.startswith(ENV_PREFIX):
                mp.delenv(key)
        for key, value in env.items():
            mp.setenv(key, value)
        sys.modules.pop("mlruns_assets.definitions", None)
        try:
            yield importlib.import_module("mlruns_assets.definitions")
        finally:
            sys.modules.pop("mlruns_assets.definitions", None)


# --------------------------------------------------------------------------- (a) configuration


def test_config_round_trips_through_the_environment(tmp_path: Path) -> None:
    full = Settings(
        tracking_uri="sqlite:////data/mlflow.db",
        database=str(tmp_path / "results.duckdb"),
        experiments=("Classification", "Imputation"),
        kinds={"Classification": "classification", "Pupil": "generic"},
        admit_failed_runs=True,
        subject_map=str(tmp_path / "map.csv"),
        max_memory_gb=2.5,
        heartbeat_seconds=7.0,
    )
    minimal = Settings(tracking_uri="/data/mlruns", database="results.duckdb")
    for config in (full, minimal):
        env = config.to_env()
        assert all(k.startswith(ENV_PREFIX) and isinstance(v, str) for k, v in env.items())
        assert Settings.from_env(env) == config
    assert Settings.from_env(minimal.to_env()).admit_failed_runs is False  # type: ignore[union-attr]
    assert Settings.from_env(minimal.to_env()).subject_map is None  # type: ignore[union-attr]


def test_experiment_names_with_commas_round_trip_and_hand_written_lists_still_parse() -> None:
    config = Settings(
        tracking_uri="/data/mlruns",
        database="results.duckdb",
        experiments=("Classification, v2", "a=b"),
        kinds={"Classification, v2": "classification", "a=b": "imputation"},
    )
    assert Settings.from_env(config.to_env()) == config
    by_hand = Settings.from_env(
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


def test_no_environment_fails_the_code_location_with_one_line_naming_the_settings(
    tmp_path: Path,
) -> None:
    assert Settings.from_env({}) is None
    with pytest.raises(ValueError, match=f"{ENV_PREFIX}DB is not set"):
        Settings.from_env({f"{ENV_PREFIX}TRACKING_URI": "sqlite:///x.db"})
    with pytest.raises(ValueError, match=f"{ENV_PREFIX}TRACKING_URI is not set"):
        Settings.from_env({f"{ENV_PREFIX}DB": "x.duckdb"})
    with pytest.raises(ValueError, match="unknown kind 'clasification'"):
        Settings.from_env(
            {
                f"{ENV_PREFIX}TRACKING_URI": "t",
                f"{ENV_PREFIX}DB": "x",
                f"{ENV_PREFIX}KINDS": "A=clasification",
            }
        )
    # Never an empty code location in silence: the load fails with the reason.
    unset = f"set {ENV_PREFIX}TRACKING_URI and {ENV_PREFIX}DB"
    with pytest.raises(RuntimeError, match=unset), definitions_module({}):
        pass
    missing = tmp_path / "nowhere"
    env = {f"{ENV_PREFIX}TRACKING_URI": str(missing), f"{ENV_PREFIX}DB": str(tmp_path / "r.duckdb")}
    not_a_store = f"tracking store {missing} is not an existing"
    with pytest.raises(RuntimeError, match=not_a_store), definitions_module(env):
        pass


# --------------------------------------------------------------------------- (b) definitions


# The figures of a classification experiment (defs/figures.py).
FIGURES = {("classification", "leaderboard"), ("classification", "stratos_curves")}


def graph_parents(defs: dg.Definitions, key: tuple[str, ...]) -> set[dg.AssetKey]:
    return set(defs.resolve_asset_graph().get(dg.AssetKey(list(key))).parent_keys)


def test_definitions_for_a_demo_store(demo: DemoStore, tmp_path: Path) -> None:
    config = Settings(
        tracking_uri=demo.tracking_uri,
        database=str(tmp_path / "results.duckdb"),
        subject_map=str(demo.subject_map_path),
    )
    with definitions_module(config.to_env()) as module:
        defs: dg.Definitions = module.defs
        dg.Definitions.validate_loadable(defs)

        every_key = {tuple(k.path) for k in defs.resolve_all_asset_keys()}
        # One asset per group of tables that one read fills and one transaction commits, and
        # the experiment's MLflow runs as the observable source they depend on.
        keys = {k for k in every_key if k[1] != "mlflow_runs" and k not in FIGURES}
        assert keys == {
            ("classification", "runs"),
            ("classification", "stratos"),
            ("imputation", "runs"),
            ("imputation", "preprocessed_signals"),
        }
        assert every_key - keys == {
            ("classification", "mlflow_runs"),
            ("imputation", "mlflow_runs"),
            *FIGURES,  # classification only: read from the tables, downstream of stratos
        }
        for key in FIGURES:
            assert graph_parents(defs, key) == {dg.AssetKey(["classification", "stratos"])}

        graph = defs.resolve_asset_graph()
        for key in keys:  # code version: the settings fingerprint; upstream: the runs
            node = graph.get(dg.AssetKey(list(key)))
            assert node.code_version and node.code_version.startswith(
                ("classification.", "imputation.")
            )
            assert node.parent_keys == {dg.AssetKey([key[0], "mlflow_runs"])}
        for key in keys:
            partitions = graph.get(dg.AssetKey(list(key))).partitions_def
            assert isinstance(partitions, dg.DynamicPartitionsDefinition)
            assert partitions.name == f"{key[0]}_runs"

        jobs = {j.name for j in defs.jobs or []}  # type: ignore[union-attr]
        assert jobs == {
            f"{slug}_{what}_job"
            for slug in ("classification", "imputation")
            for what in ("extraction", "removal")
        } | {"classification_leaderboard_job", "classification_curves_job"}
        sensors = {s.name: s for s in defs.sensors or []}
        assert set(sensors) == {
            "classification_discovery_sensor",
            "imputation_discovery_sensor",
            "extraction_stall_sensor",
            "figures_automation_sensor",
        }
        for slug in ("classification", "imputation"):
            targets = {t.job_name for t in sensors[f"{slug}_discovery_sensor"].targets}
            assert targets == {f"{slug}_extraction_job", f"{slug}_removal_job"}
            job = defs.resolve_job_def(f"{slug}_extraction_job")
            assert {tuple(k.path) for k in job.asset_layer.executable_asset_keys} == {
                k for k in keys if k[0] == slug
            }

        checks = {(tuple(c.asset_key.path), c.name) for c in graph.asset_check_keys}
        for slug, kind in (
            ("classification", Kind.CLASSIFICATION),
            ("imputation", Kind.IMPUTATION),
        ):
            for table, asset in asset_of_table(kind).items():
                assert ((slug, asset), f"{table}_is_valid") in checks
        assert (("classification", "stratos"), "calibration_curves_is_valid") in checks
        assert (("classification", "runs"), "metric_history_is_valid") in checks
        assert {
            (("classification", "runs"), "synthetic_runs_absent"),
            (("classification", "stratos"), "no_original_subject_codes"),
            (("imputation", "runs"), "synthetic_runs_absent"),
            (("classification", "leaderboard"), "ranked_by_auroc"),
        } <= checks

        # Built from the environment: the UI shows which variable each location comes from.
        resources = defs.resources or {}
        tracking_uri = resources["mlflow_tracking"].tracking_uri
        assert isinstance(tracking_uri, dg.EnvVar)
        assert tracking_uri == f"{ENV_PREFIX}TRACKING_URI"
        assert tracking_uri.get_value() == demo.tracking_uri
        assert resources["extraction_policy"].subject_map == str(demo.subject_map_path)
        assert resources["warehouse"].database.get_value() == config.database


# --------------------------------------------------------------------------- (c) web server


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


def test_webserver_shows_the_extracted_partitions(demo: DemoStore, tmp_path: Path) -> None:
    database, home = tmp_path / "results.duckdb", tmp_path / "home"
    config = Settings(
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

    with running_webserver(config, home, tmp_path) as (port, entries):
        assert [e["locationOrLoadError"]["__typename"] for e in entries] == ["RepositoryLocation"]

        query = ASSETS_QUERY % (
            PARTITIONS_FRAGMENT % ("classification", "classification")
            + PARTITIONS_FRAGMENT % ("imputation", "imputation")
        )
        data = graphql(port, query)
        listed = {tuple(n["assetKey"]["path"]) for n in data["assetNodes"]}
        expected = {("classification", a.name) for a in assets_for_kind(Kind.CLASSIFICATION)}
        expected |= {("imputation", a.name) for a in assets_for_kind(Kind.IMPUTATION)}
        expected |= {(slug, "mlflow_runs") for slug in ("classification", "imputation")}
        expected |= FIGURES
        assert listed == expected

        for slug, run_ids in (
            ("classification", demo.good_run_ids),
            ("imputation", demo.imputation_run_ids),
        ):
            node = data[slug]
            assert node["__typename"] == "AssetNode", node
            # The UI lists each run by its name, then its id.
            client = mlflow.MlflowClient(demo.tracking_uri)
            named = [f"{client.get_run(r).info.run_name}@{r}" for r in run_ids]
            assert sorted(node["partitionKeys"]) == sorted(named)
            statuses = node["assetPartitionStatuses"]
            assert statuses["__typename"] == "DefaultPartitionStatuses"
            assert sorted(statuses["materializedPartitions"]) == sorted(named)
            assert statuses["failedPartitions"] == []
            assert statuses["unmaterializedPartitions"] == []
            assert statuses["materializingPartitions"] == []


def test_dg_check_defs_loads_the_code_location(demo: DemoStore, tmp_path: Path) -> None:
    """`dg check defs` (and so `dg dev`) loads the same code location as `dagster dev`."""
    settings = Settings(tracking_uri=demo.tracking_uri, database=str(tmp_path / "r.duckdb"))
    venv = Path(sys.executable).parent.parent
    env = clean_environ(**settings.to_env(), VIRTUAL_ENV=str(venv))
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [str(venv / "bin" / "dg"), "check", "defs"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All definitions loaded successfully" in done.stdout + done.stderr
