"""Dagster resources: where the runs are read from and how an extraction behaves."""

from __future__ import annotations

import dagster as dg
from pydantic import Field, PrivateAttr

from mlruns_assets.tracking import TrackingStore


class MlflowTrackingResource(dg.ConfigurableResource):
    """The MLflow tracking store that the runs are read from (never written)."""

    tracking_uri: str = Field(
        description="A legacy mlruns folder, sqlite:///path/to/mlflow.db or http(s)://server."
    )
    admit_failed_runs: bool = Field(
        default=False,
        description="Also extract FAILED and KILLED runs (by default only FINISHED runs).",
    )
    subject_map: str | None = Field(
        default=None,
        description=(
            "Private CSV (original,anonymized) or YAML mapping of subject codes. When set, every "
            "subject code written passes through it and unmapped codes fail the partition."
        ),
    )
    max_memory_gb: float = Field(
        default=4.0, description="RSS limit of an extraction step; past it the partition fails."
    )
    heartbeat_seconds: float = Field(
        default=60.0, description="Longest interval between two progress events of a step."
    )
    _store: TrackingStore | None = PrivateAttr(default=None)

    @property
    def admitted_statuses(self) -> tuple[str, ...]:
        return ("FINISHED", "FAILED", "KILLED") if self.admit_failed_runs else ("FINISHED",)

    def store(self) -> TrackingStore:
        """The (cached) read-only client for this tracking store."""
        if self._store is None:
            self._store = TrackingStore(self.tracking_uri)
        return self._store


class PrivateOutputsResource(dg.ConfigurableResource):
    """Where outputs that must stay private go (never the results database), and what they are."""

    folder: str = Field(
        description=(
            "Private output folder (default: private/ beside the results database). Its files "
            "carry original subject codes: keep it out of anything published."
        )
    )
    demo_subjects: list[str] = Field(
        default_factory=list,
        description=(
            "Subjects whose raw and imputed traces are exported for figures, by original or "
            "anonymized code."
        ),
    )
