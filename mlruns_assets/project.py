"""Builds the Dagster definitions from a project configuration (environment or CLI)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from mlruns_assets.assets import build_extraction_asset, extraction_job
from mlruns_assets.demo_traces import build_demo_traces_asset
from mlruns_assets.extraction import IMPUTATION, infer_kind
from mlruns_assets.partitions import partitions_def_name
from mlruns_assets.resources import MlflowTrackingResource, PrivateOutputsResource
from mlruns_assets.sensors import build_discovery_sensor
from mlruns_assets.stall_sensor import build_stall_sensor
from mlruns_assets.tracking import ExperimentRef, TrackingStore
from mlruns_assets.warehouse import DuckDBWarehouse

ENV_PREFIX = "MLRUNS_ASSETS_"


def _names(value: str) -> tuple[str, ...]:
    """Experiment names: a JSON list (what ``to_env`` writes) or, by hand, ``A,B``."""
    if value.startswith("["):
        return tuple(str(name) for name in json.loads(value))
    return tuple(name.strip() for name in value.split(",") if name.strip())


def _kinds(value: str) -> dict[str, str]:
    """Experiment name -> kind: a JSON object (what ``to_env`` writes) or, by hand,
    ``Name=kind,Other=kind``."""
    if value.startswith("{"):
        return {str(k): str(v) for k, v in json.loads(value).items()}
    pairs = (item.split("=", 1) for item in value.split(",") if "=" in item)
    return {name.strip(): kind.strip() for name, kind in pairs}


@dataclass(frozen=True)
class ProjectConfig:
    """Where runs come from, where tables go, and which experiments to extract."""

    tracking_uri: str
    database: str
    experiments: tuple[str, ...] = ()
    kinds: Mapping[str, str] = field(default_factory=dict)
    admit_failed_runs: bool = False
    subject_map: str | None = None
    max_memory_gb: float = 4.0
    heartbeat_seconds: float = 60.0
    # Below this much free disk where the database lives, extraction refuses to start.
    min_free_disk_gb: float = 5.0
    # How long a step keeps its write connection across partitions (warehouse.PartitionWriter).
    hold_connection_seconds: float = 5.0
    # A STARTED extraction run silent this long is hung: the stall sensor fails it. Must be
    # well above heartbeat_seconds (the step reports at least that often).
    stall_timeout_seconds: float = 90.0
    stall_sensor_interval_seconds: int = 30
    # Subjects (original or anonymized codes) whose traces go to the private folder.
    demo_subjects: tuple[str, ...] = ()
    # Default: private/ beside the database.
    private_dir: str | None = None

    @property
    def private_folder(self) -> str:
        """Where private outputs go: never inside the results database."""
        return self.private_dir or str(
            Path(self.database).expanduser().resolve().parent / "private"
        )

    def to_env(self) -> dict[str, str]:
        """Environment for a ``dagster`` process that must build the same definitions."""
        env = {
            f"{ENV_PREFIX}TRACKING_URI": self.tracking_uri,
            f"{ENV_PREFIX}DB": self.database,
            # JSON: experiment names may contain commas and "=".
            f"{ENV_PREFIX}EXPERIMENTS": json.dumps(list(self.experiments)),
            f"{ENV_PREFIX}KINDS": json.dumps(dict(self.kinds)),
            f"{ENV_PREFIX}ADMIT_FAILED_RUNS": "1" if self.admit_failed_runs else "",
            f"{ENV_PREFIX}MAX_MEMORY_GB": str(self.max_memory_gb),
            f"{ENV_PREFIX}HEARTBEAT_SECONDS": str(self.heartbeat_seconds),
            f"{ENV_PREFIX}MIN_FREE_DISK_GB": str(self.min_free_disk_gb),
            f"{ENV_PREFIX}HOLD_CONNECTION_SECONDS": str(self.hold_connection_seconds),
            f"{ENV_PREFIX}STALL_TIMEOUT_SECONDS": str(self.stall_timeout_seconds),
            f"{ENV_PREFIX}STALL_SENSOR_INTERVAL_SECONDS": str(self.stall_sensor_interval_seconds),
        }
        if self.subject_map:
            env[f"{ENV_PREFIX}SUBJECT_MAP"] = self.subject_map
        if self.demo_subjects:
            env[f"{ENV_PREFIX}DEMO_SUBJECTS"] = ",".join(self.demo_subjects)
        if self.private_dir:
            env[f"{ENV_PREFIX}PRIVATE_DIR"] = self.private_dir
        return env

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ProjectConfig | None:
        def get(name: str) -> str:
            return environ.get(f"{ENV_PREFIX}{name}", "").strip()

        if not get("TRACKING_URI") or not get("DB"):
            return None
        experiments, kinds = _names(get("EXPERIMENTS")), _kinds(get("KINDS"))
        return cls(
            tracking_uri=get("TRACKING_URI"),
            database=get("DB"),
            experiments=experiments,
            kinds=kinds,
            admit_failed_runs=bool(get("ADMIT_FAILED_RUNS")),
            subject_map=get("SUBJECT_MAP") or None,
            max_memory_gb=float(get("MAX_MEMORY_GB") or 4.0),
            heartbeat_seconds=float(get("HEARTBEAT_SECONDS") or 60.0),
            min_free_disk_gb=float(get("MIN_FREE_DISK_GB") or 5.0),
            hold_connection_seconds=float(get("HOLD_CONNECTION_SECONDS") or 5.0),
            stall_timeout_seconds=float(get("STALL_TIMEOUT_SECONDS") or 90.0),
            stall_sensor_interval_seconds=int(get("STALL_SENSOR_INTERVAL_SECONDS") or 30),
            demo_subjects=tuple(c.strip() for c in get("DEMO_SUBJECTS").split(",") if c.strip()),
            private_dir=get("PRIVATE_DIR") or None,
        )

    def resources(self) -> dict[str, object]:
        return {
            "mlflow_tracking": MlflowTrackingResource(
                tracking_uri=self.tracking_uri,
                admit_failed_runs=self.admit_failed_runs,
                subject_map=self.subject_map,
                max_memory_gb=self.max_memory_gb,
                heartbeat_seconds=self.heartbeat_seconds,
            ),
            "warehouse": DuckDBWarehouse(
                database=self.database,
                min_free_disk_gb=self.min_free_disk_gb,
                hold_connection_seconds=self.hold_connection_seconds,
            ),
            "private_outputs": PrivateOutputsResource(
                folder=self.private_folder, demo_subjects=list(self.demo_subjects)
            ),
        }


def experiment_kind(config: ProjectConfig, experiment: ExperimentRef) -> str:
    return config.kinds.get(experiment.name) or infer_kind(experiment.name)


def build_definitions(
    config: ProjectConfig, experiments: list[ExperimentRef] | None = None
) -> dg.Definitions:
    """Assets, jobs and sensors for every configured experiment of the tracking store (and a
    demo traces asset per imputation experiment when demo subjects are configured).

    Listing the experiments reads the tracking store once when the code location loads: the
    asset keys depend on it.
    """
    if experiments is None:
        experiments = TrackingStore(config.tracking_uri).experiments(config.experiments or None)
    assets, jobs, sensors = [], [], []  # bounded: one of each per experiment
    partitions_by_job: dict[str, str] = {}  # bounded: one per experiment
    for experiment in experiments:
        kind = experiment_kind(config, experiment)
        asset = build_extraction_asset(experiment, kind)
        job = extraction_job(experiment, asset)
        assets.append(asset)
        if kind == IMPUTATION and config.demo_subjects:
            assets.append(build_demo_traces_asset(experiment))
        jobs.append(job)
        sensors.append(build_discovery_sensor(experiment, kind, job))
        partitions_by_job[job.name] = partitions_def_name(experiment)
    if partitions_by_job:
        sensors.append(
            build_stall_sensor(
                partitions_by_job,
                timeout_seconds=config.stall_timeout_seconds,
                minimum_interval_seconds=config.stall_sensor_interval_seconds,
            )
        )
    return dg.Definitions(
        assets=assets,
        jobs=jobs,
        sensors=sensors,
        resources=config.resources(),
        executor=dg.in_process_executor,
    )
