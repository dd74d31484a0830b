"""Dagster resources, each built from the one settings model (``runtime.settings``)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field, PrivateAttr

from mlruns_assets.pipeline.run_extraction import ExtractionSettings, Heartbeat
from mlruns_assets.runtime.guardrails import MemoryGuard
from mlruns_assets.runtime.settings import Kind, Settings, admitted_statuses, env_name
from mlruns_assets.source.tracking import TrackingStore
from mlruns_assets.transform.subjects import load_subject_map
from mlruns_assets.warehouse.duckdb_writer import DuckDBWarehouse


class MlflowTrackingResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The MLflow tracking store that the runs are read from (never written)."""

    tracking_uri: str = Field(description=Settings.help("tracking_uri"))
    admit_failed_runs: bool = Field(
        default=Settings.default("admit_failed_runs"),
        description=Settings.help("admit_failed_runs"),
    )
    _store: TrackingStore | None = PrivateAttr(default=None)

    @property
    def admitted_statuses(self) -> tuple[str, ...]:
        return admitted_statuses(self.admit_failed_runs)

    def store(self) -> TrackingStore:
        """The (cached) read-only client for this tracking store."""
        if self._store is None:
            self._store = TrackingStore(self.tracking_uri)
        return self._store


class ExtractionPolicyResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """How runs are extracted: re-anonymization, the memory limit and the progress interval."""

    subject_map: str | None = Field(
        default=Settings.default("subject_map"), description=Settings.help("subject_map")
    )
    max_memory_gb: float = Field(
        default=Settings.default("max_memory_gb"), description=Settings.help("max_memory_gb")
    )
    workers: int = Field(default=Settings.default("workers"), description=Settings.help("workers"))
    heartbeat_seconds: float = Field(
        default=Settings.default("heartbeat_seconds"),
        description=Settings.help("heartbeat_seconds"),
    )

    def load_subject_map(self) -> dict[str, str] | None:
        """The subject map (read when a step starts), or None when none is configured."""
        return load_subject_map(self.subject_map) if self.subject_map else None

    def memory_guard(self) -> MemoryGuard:
        return MemoryGuard(int(self.max_memory_gb * 1e9))

    def extraction_settings(self, kind: Kind, heartbeat: Heartbeat | None) -> ExtractionSettings:
        return ExtractionSettings(
            kind=kind,
            subject_map=self.load_subject_map(),
            memory=self.memory_guard(),
            heartbeat=heartbeat,
        )


class PrivateOutputsResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where outputs that must stay private go (never the results database), and what they are."""

    folder: str = Field(
        description=(
            "Private output folder (default: private/ beside the results database). Its files "
            "carry original subject codes: keep it out of anything published."
        )
    )
    demo_subjects: list[str] = Field(
        default_factory=list, description=Settings.help("demo_subjects")
    )


def build_warehouse(
    settings: Settings, database: str | dg.EnvVar | None = None, warehouse: str | dg.EnvVar = ""
) -> DuckDBWarehouse:
    """The results warehouse the settings name (a DuckDB file, or a DuckLake catalog)."""
    return DuckDBWarehouse(
        database=settings.database if database is None else database,
        warehouse=warehouse or settings.warehouse or "",
        duckdb_extensions=settings.duckdb_extensions,
        compact_every_partitions=settings.compact_every_partitions,
        min_free_disk_gb=settings.min_free_disk_gb,
        hold_connection_seconds=settings.hold_connection_seconds,
        lock_timeout_seconds=settings.lock_timeout_seconds,
    )


def build_resources(settings: Settings, *, from_environment: bool = False) -> dict[str, object]:
    """The resources of the code location. Built from the environment, the tracking store and
    the warehouse are ``dg.EnvVar``s, so the UI shows where they come from."""
    tracking_uri: str | dg.EnvVar = settings.tracking_uri
    database: str | dg.EnvVar = settings.database
    warehouse: str | dg.EnvVar = ""
    if from_environment:
        tracking_uri = dg.EnvVar(env_name("tracking_uri"))
        database = dg.EnvVar(env_name("database"))
        if settings.warehouse:  # the DuckLake URL and its password stay in the environment
            warehouse = dg.EnvVar(env_name("warehouse"))
    return {
        "mlflow_tracking": MlflowTrackingResource(
            tracking_uri=tracking_uri, admit_failed_runs=settings.admit_failed_runs
        ),
        "extraction_policy": ExtractionPolicyResource(
            subject_map=settings.subject_map,
            max_memory_gb=settings.max_memory_gb,
            workers=settings.workers,
            heartbeat_seconds=settings.heartbeat_seconds,
        ),
        "warehouse": build_warehouse(settings, database, warehouse),
        "private_outputs": PrivateOutputsResource(
            folder=settings.private_folder, demo_subjects=list(settings.demo_subjects)
        ),
    }
