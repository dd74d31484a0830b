"""Which MLflow runs should be partitions: shared by the discovery sensor and ``extract``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from mlflow.entities import ViewType

from mlruns_assets.runtime.settings import Kind, Settings, infer_kind
from mlruns_assets.source.artifacts import IMPUTATION_FOLDER, METRICS_FOLDER
from mlruns_assets.source.partition_keys import keys_by_run_id, partition_key
from mlruns_assets.source.tracking import (
    ExperimentRef,
    TrackingStore,
    exclusion_reason,
    run_version,
)

# A run's end time is the logging client's clock, and its final write can reach the store after
# a later run's: the cursor is re-read this far back (runs already known are skipped).
CURSOR_LOOKBACK_MS = 10 * 60 * 1000


@dataclass
class DiscoveryPlan:
    """What to change in an experiment's partitions to match the tracking store. Partitions
    are named by their keys (``source.partition_keys``): a known run keeps the key it has."""

    to_add: list[str] = field(default_factory=list)
    to_remove: list[str] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)  # run_id -> reason
    # key -> ``run_version`` of every eligible run listed (new or known)
    versions: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # key -> current run name, likewise
    cursor_end_time: int | None = None


def plan_discovery(
    store: TrackingStore,
    experiment: ExperimentRef,
    known_keys: set[str],
    *,
    admitted_statuses: tuple[str, ...] = ("FINISHED",),
    after_end_time: int | None = None,
    batch_size: int = 1000,
) -> DiscoveryPlan:
    """New eligible runs (oldest end time first, at most ``batch_size``) and deleted ones:
    deleted in MLflow, or (when every run was listed: no cursor, no batch limit reached) gone
    from the store altogether.

    ``after_end_time`` is the sensor's cursor: only runs that ended at or after it (less
    ``CURSOR_LOOKBACK_MS``) are read in full. RUNNING runs have no end time yet, so they are
    picked up once they finish.
    """
    plan = DiscoveryPlan(cursor_end_time=after_end_time)
    known = keys_by_run_id(known_keys)
    filter_string = (
        f"attributes.end_time >= {after_end_time - CURSOR_LOOKBACK_MS}" if after_end_time else ""
    )
    active: set[str] = set()  # bounded: the run ids of one experiment
    listed_all = after_end_time is None
    for run in store.iter_runs(
        experiment.experiment_id,
        filter_string=filter_string,
        order_by=["attributes.end_time ASC"],
    ):
        run_id = run.info.run_id
        active.add(run_id)
        reason = exclusion_reason(run, experiment.name, admitted_statuses)
        if reason is not None:
            plan.excluded[run_id] = reason
            continue
        key = known.get(run_id) or partition_key(run_id, run.info.run_name)
        if run_id not in known and key not in plan.versions:
            if len(plan.to_add) >= batch_size:
                listed_all = False
                break
            plan.to_add.append(key)
            if run.info.end_time is not None:
                plan.cursor_end_time = max(plan.cursor_end_time or 0, run.info.end_time)
        plan.versions[key] = run_version(run)
        plan.names[key] = run.info.run_name or ""
    deleted = {
        run.info.run_id
        for run in store.iter_runs(experiment.experiment_id, view_type=ViewType.DELETED_ONLY)
    }
    # After `mlflow gc` a deleted run is in neither listing; only a full listing can tell.
    gone = set(known) - active - deleted if listed_all else set()
    plan.to_remove = sorted(known[run_id] for run_id in (set(known) & deleted) | gone)
    for run_id in deleted:
        plan.excluded.setdefault(run_id, "deleted")
    for run_id in gone:
        plan.excluded[run_id] = "no longer in the tracking store (garbage-collected)"
    return plan


# How many finished runs of an experiment are looked at to tell its kind.
KIND_SAMPLE_RUNS = 3
KIND_ARTIFACTS = ((METRICS_FOLDER, Kind.CLASSIFICATION), (IMPUTATION_FOLDER, Kind.IMPUTATION))


def kind_from_artifacts(store: TrackingStore, experiment: ExperimentRef) -> Kind | None:
    """The kind a few finished runs show by what they carry: a ``metrics/metrics_*.pickle``
    makes classification, an ``imputation/imputation_*.pickle`` imputation, other artifacts
    generic. None when no finished run shows any artifact (none yet, or the artifact store out
    of reach): an absent artifact root must not turn a classification experiment generic."""
    runs = store.client.search_runs(
        [experiment.experiment_id],
        filter_string="attributes.status = 'FINISHED'",
        max_results=KIND_SAMPLE_RUNS,
    )
    carries_artifacts = False
    for run in runs:
        try:
            with store.artifacts(run) as artifacts:
                if not store.client.list_artifacts(run.info.run_id):
                    continue
                carries_artifacts = True
                for folder, kind in KIND_ARTIFACTS:
                    names = [p.rsplit("/", 1)[-1] for p, _ in artifacts.list(folder)]
                    if any(n.startswith(f"{folder}_") and n.endswith(".pickle") for n in names):
                        return kind
        except Exception:  # an unreadable artifact store tells nothing about the kind
            continue
    return Kind.GENERIC if carries_artifacts else None


def experiment_kinds(
    store: TrackingStore, experiments: list[ExperimentRef], configured: Mapping[str, Kind]
) -> dict[str, Kind]:
    """Experiment name -> kind: configured (``--kind``), else from its runs' artifacts, else
    (no finished run yet) from its name."""
    kinds: dict[str, Kind] = {}  # bounded: one per experiment
    for experiment in experiments:
        kinds[experiment.name] = (
            configured.get(experiment.name)
            or kind_from_artifacts(store, experiment)
            or infer_kind(experiment.name)
        )
    return kinds


def with_kinds(
    settings: Settings, store: TrackingStore, experiments: list[ExperimentRef]
) -> Settings:
    """The settings with every experiment's kind resolved (``experiment_kinds``)."""
    return dataclasses.replace(settings, kinds=experiment_kinds(store, experiments, settings.kinds))
