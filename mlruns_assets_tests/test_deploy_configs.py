"""The scale-out configurations in deploy/ pass Dagster's own config schemas (they cannot all run
here: the Kubernetes variant needs a cluster), and the files that must agree do."""

from __future__ import annotations

import importlib
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config

from mlruns_assets.defs.assets import build_extraction_asset
from mlruns_assets.defs.partitions import EXTRACTION_POOL
from mlruns_assets.pipeline.checkpoint import settings_fingerprint
from mlruns_assets.runtime.settings import Kind
from mlruns_assets.source.tracking import ExperimentRef

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
CELERY_INSTANCE = DEPLOY / "dagster.yaml"
K8S_INSTANCE = DEPLOY / "k8s" / "dagster.yaml"
HELM_VALUES = DEPLOY / "k8s" / "values.yaml"
CELERY_WORKER = DEPLOY / "celery" / "worker.yaml"

ENVIRONMENT = {
    "DAGSTER_PG_HOST": "postgres.example.org",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USER": "dagster",
    "DAGSTER_PG_PASSWORD": "secret",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_CELERY_BROKER_URL": "redis://redis.example.org:6379/0",
    "DAGSTER_CELERY_BACKEND_URL": "redis://redis.example.org:6379/1",
    "DAGSTER_COMPUTE_LOGS_BUCKET": "logs",
}


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)


def load_instance(path: Path, tmp_path: Path) -> Mapping[str, Any]:
    """The instance config as Dagster loads and validates it from a DAGSTER_HOME."""
    shutil.copyfile(path, tmp_path / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(tmp_path))
    assert custom_class is None
    return config


def validate_class(module: str, class_name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` processed by the configurable class's own schema (env sources resolved)."""
    cls = getattr(importlib.import_module(module), class_name)
    result = process_config(resolve_to_config_type(cls.config_type()), dict(config))
    assert result.success, [e.message for e in result.errors or []]
    return dict(result.value or {})


def validate_configurable_classes(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every configurable class of an instance config, validated; processed config by entry."""
    checked = {
        "storage": validate_class(
            "dagster_postgres", "DagsterPostgresStorage", config["storage"]["postgres"]
        )
    }
    for entry in ("run_coordinator", "run_launcher", "compute_logs"):
        section = config[entry]
        checked[entry] = validate_class(section["module"], section["class"], section["config"])
    return checked


@pytest.mark.parametrize("path", [CELERY_INSTANCE, K8S_INSTANCE], ids=["celery", "k8s"])
def test_instance_configs_pass_dagsters_schemas(path: Path, tmp_path: Path) -> None:
    config = load_instance(path, tmp_path)
    checked = validate_configurable_classes(config)
    # Postgres through psycopg2: SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3.
    assert checked["storage"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert checked["run_coordinator"]["dequeue_interval_seconds"] > 0
    # Failed runs give their pool slots back (dagster #28456); crashed runs are retried once,
    # runs failed by bad input are not.
    assert config["run_monitoring"]["enabled"] is True
    assert config["run_monitoring"]["free_slots_after_run_end_seconds"] > 0
    assert config["run_monitoring"]["max_resume_run_attempts"] == 0
    assert config["run_retries"] == {
        "enabled": True,
        "max_retries": 1,
        "retry_on_asset_or_op_failure": False,
    }
    pools = config["concurrency"]["pools"]
    assert pools["granularity"] == "run"
    assert pools["default_limit"] >= 1
    assert config["concurrency"]["runs"]["max_concurrent_runs"] >= pools["default_limit"]


def test_the_celery_instance_launches_on_redis(tmp_path: Path) -> None:
    config = load_instance(CELERY_INSTANCE, tmp_path)
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == (
        "dagster_celery.launcher",
        "CeleryRunLauncher",
    )
    checked = validate_class(launcher["module"], launcher["class"], launcher["config"])
    assert checked["broker"] == ENVIRONMENT["DAGSTER_CELERY_BROKER_URL"]
    # The daemon asks the result backend for a run's health: rpc:// would not serve it.
    assert checked["backend"] == ENVIRONMENT["DAGSTER_CELERY_BACKEND_URL"]
    assert checked["config_source"]["worker_prefetch_multiplier"] == 1
    assert checked["config_source"]["worker_disable_prefetch"] is True
    assert checked["config_source"]["task_acks_late"] is False


def test_the_celery_workers_use_the_launchers_broker_and_settings(tmp_path: Path) -> None:
    from dagster_celery.cli import get_validated_config

    worker = get_validated_config(str(CELERY_WORKER))
    launcher = load_instance(CELERY_INSTANCE, tmp_path)["run_launcher"]["config"]
    assert (
        yaml.safe_load(CELERY_WORKER.read_text())["execution"]["config"]["broker"]
        == (launcher["broker"])
    )
    assert worker["broker"] == ENVIRONMENT["DAGSTER_CELERY_BROKER_URL"]
    assert worker["backend"] == ENVIRONMENT["DAGSTER_CELERY_BACKEND_URL"]
    for key, value in launcher["config_source"].items():
        assert worker["config_source"][key] == value


def test_a_wrong_key_is_refused(tmp_path: Path) -> None:
    """The validation above bites: a misspelt field fails Dagster's schema."""
    text = CELERY_INSTANCE.read_text().replace("free_slots_after_run_end_seconds", "free_slots")
    (tmp_path / "dagster.yaml").write_text(text)
    with pytest.raises(DagsterInvalidConfigError):
        dagster_instance_config(str(tmp_path))
    launcher = yaml.safe_load(CELERY_INSTANCE.read_text())["run_launcher"]
    cls = importlib.import_module(launcher["module"]).CeleryRunLauncher
    wrong = {**launcher["config"], "brokr": "redis://x"}
    assert not process_config(resolve_to_config_type(cls.config_type()), wrong).success


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_helm_values_agree_with_the_k8s_instance(tmp_path: Path) -> None:
    values = yaml.safe_load(HELM_VALUES.read_text())
    instance = load_instance(K8S_INSTANCE, tmp_path)
    launcher = instance["run_launcher"]
    assert values["runLauncher"]["type"] == launcher["class"] == "K8sRunLauncher"
    helm_launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    # The chart's camelCase keys name dagster-k8s fields, and agree with the instance file.
    as_config: dict[str, Any] = {
        "instance_config_map": launcher["config"]["instance_config_map"],
        "job_namespace": helm_launcher["jobNamespace"],
        "load_incluster_config": helm_launcher["loadInclusterConfig"],
        "image_pull_policy": helm_launcher["imagePullPolicy"],
        "env_secrets": [s["name"] for s in helm_launcher["envSecrets"]],
        "fail_pod_on_run_failure": helm_launcher["failPodOnRunFailure"],
    }
    validate_class(launcher["module"], launcher["class"], as_config)
    for key, value in as_config.items():
        if key != "instance_config_map":
            assert launcher["config"][key] == value, key
    run_k8s = helm_launcher["runK8sConfig"]
    assert {_snake(k): v for k, v in run_k8s["jobSpecConfig"].items()} == (
        launcher["config"]["run_k8s_config"]["job_spec_config"]
    )
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    for key, value in monitoring.items():
        assert instance["run_monitoring"][_snake(key)] == value, key
    retries = values["dagsterDaemon"]["runRetries"]
    assert instance["run_retries"]["max_retries"] == retries["maxRetries"]
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert (
        instance["run_coordinator"]["config"]["dequeue_interval_seconds"]
        == (queued["dequeueIntervalSeconds"])
    )
    assert values["dagster-user-deployments"]["deployments"][0]["dagsterApiGrpcArgs"] == [
        "-m",
        "mlruns_assets.definitions",
    ]


def test_extraction_steps_take_the_pool_the_configs_limit() -> None:
    """With granularity "run" a run waits in the queue while the extraction pool is full."""
    asset = build_extraction_asset(
        ExperimentRef("1", "Classification"), settings_fingerprint(Kind.CLASSIFICATION, None), 50
    )
    assert asset.op.pool == EXTRACTION_POOL


def test_ci_runs_the_loopback_scenario_with_every_fault_into_ducklake() -> None:
    """Issue #17's faults all run in CI: the worker kill is the scenario's default (``--kill-after
    0`` would turn it off), the Redis and Postgres restarts are flags; the results go to DuckLake
    (``--ducklake``, which .ci/distributed takes as its first argument only), within 15 minutes."""
    ci = (DEPLOY.parent / ".ci" / "run").read_text().splitlines()
    calls = [line for line in ci if ".ci/distributed" in line and not line.startswith("#")]
    assert len(calls) == 1
    assert calls[0].startswith("timeout --kill-after=60 900 .ci/distributed")
    arguments = calls[0].split(".ci/distributed", 1)[1].split()
    assert arguments[0] == "--ducklake"
    assert {"--restart-redis", "--restart-postgres"} <= set(arguments)
    assert not any(a.startswith("--kill-after") for a in arguments)


def test_the_workspace_points_at_a_standalone_code_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon must not spawn the code location's server itself: one spawned while Postgres
    is down fails, and the daemon then fails every backfill of the location until it reloads."""
    from dagster._core.workspace.config_schema import process_workspace_config

    monkeypatch.setenv("DAGSTER_CODE_SERVER_HOST", "code.example.org")
    monkeypatch.setenv("DAGSTER_CODE_SERVER_PORT", "4000")
    workspace = DEPLOY / "workspace.yaml"
    result = process_workspace_config(yaml.safe_load(workspace.read_text()))
    assert result.success, [e.message for e in result.errors or []]
    (entry,) = (result.value or {})["load_from"]
    server = entry["grpc_server"]
    assert (server["host"], server["port"]) == ("code.example.org", 4000)
    assert server["location_name"] == "mlruns_assets"
