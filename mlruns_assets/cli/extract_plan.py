"""What ``extract`` will do: discover each experiment's runs, remove those gone from MLflow, and
decide for every partition whether its status still vouches for its rows."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import dagster as dg

from mlruns_assets.defs.checkpoints import (
    forget_partitions,
    partition_states,
    report_changed_versions,
)
from mlruns_assets.defs.partitions import contiguous_ranges, partitions_def_name
from mlruns_assets.defs.rekey import moves_to_current_names
from mlruns_assets.defs.removal import removal_job_name, removal_run_config
from mlruns_assets.defs.resources import build_warehouse
from mlruns_assets.pipeline.checkpoint import (
    ROWS_GONE,
    RUN_CHANGED,
    State,
    settings_fingerprint,
)
from mlruns_assets.runtime.settings import Kind, Settings
from mlruns_assets.source.discovery import plan_discovery
from mlruns_assets.source.partition_keys import run_id_of
from mlruns_assets.source.tracking import ExperimentRef, TrackingStore
from mlruns_assets.transform.subjects import load_subject_map
from mlruns_assets.warehouse.identity import committed_run_ids

QUIET_LOGGERS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class ExtractSummary:
    """What one ``extract`` did (or, dry, would do), per partition outcome."""

    materialized: list[str] = field(default_factory=list)
    skipped: int = 0
    # partition -> why it is (re-)extracted: missing, failed or stale, with the cause
    todo: dict[str, str] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    workers: int = 0  # worker processes that read the runs (0: the command's own process)
    # partitions keyed by run id only or by an older run name (``mlruns-assets rekey``)
    behind_names: int = 0

    def rekey_hint(self) -> str:
        return (
            f"{self.behind_names} partitions are keyed by run id only or by an older run name; "
            "`mlruns-assets rekey` names them after their runs (their checkpoints are kept)"
        )

    @property
    def left(self) -> int:
        return len(self.todo) - len(self.materialized) - len(self.failed)

    def lines(self) -> list[str]:
        out = [
            f"materialized {len(self.materialized)}, skipped {self.skipped} (up to date), "
            f"excluded {len(self.excluded)}, failed {len(self.failed)}, "
            f"removed {len(self.removed)} in {self.seconds:.1f} s"
            + (f" ({self.workers} worker processes)" if self.workers else "")
        ]
        for label, reasons in (("extracted", self.todo), ("excluded", self.excluded)):
            counts = Counter(reasons.values())
            if counts and (label == "excluded" or set(counts) != {"missing: never extracted"}):
                out.append(f"{label}: " + ", ".join(f"{n} {r}" for r, n in sorted(counts.items())))
        out += [f"FAILED {cause}" for cause in self.failed.values()]
        if self.behind_names:
            out.append(self.rekey_hint())
        if self.interrupted:
            out.append(
                f"interrupted: {len(self.materialized)} committed, {self.left} left; "
                "rerun to resume"
            )
        return out


@dataclass
class ExperimentWork:
    """One experiment's partitions to (re-)extract, as contiguous ranges in partition order."""

    experiment: ExperimentRef
    kind: Kind
    ranges: list[list[str]]


def _committed_runs(
    database_id: str | None, config: Settings, schemas: list[str]
) -> dict[str, set[str]]:
    """Schema -> runs with rows in the database: one query per experiment."""
    if database_id is None:
        return {schema: set() for schema in schemas}
    with build_warehouse(config).get_connection(read_only=True) as conn:
        return {schema: committed_run_ids(conn, schema) for schema in schemas}


def plan_work(
    config: Settings,
    instance: dg.DagsterInstance,
    store: TrackingStore,
    experiments: list[ExperimentRef],
    defs: dg.Definitions,
    summary: ExtractSummary,
    *,
    database_id: str | None,
    full_refresh: bool,
    dry_run: bool,
) -> list[ExperimentWork]:
    """Discover each experiment's runs, remove those gone from MLflow, and decide for every
    partition whether its status still vouches for its rows (``pipeline.checkpoint``). Unless
    ``dry_run``: partitions are added, gone runs removed, partitions whose rows are not in this
    database forgotten (the UI then shows them missing too), and changed runs observed (the UI
    then shows them stale)."""
    subject_map = load_subject_map(config.subject_map) if config.subject_map else None
    committed = _committed_runs(database_id, config, [e.slug for e in experiments])
    work: list[ExperimentWork] = []  # bounded: one per experiment
    for experiment in experiments:
        kind = config.kind_of(experiment.name)
        name = partitions_def_name(experiment)
        known = set(instance.get_dynamic_partitions(name))
        plan = plan_discovery(
            store, experiment, known, admitted_statuses=config.admitted_statuses, batch_size=10**9
        )
        summary.excluded.update(plan.excluded)
        if not dry_run:
            _apply_discovery(instance, experiment, defs, plan.to_add, plan.to_remove, summary)
        ordered = [k for k in instance.get_dynamic_partitions(name) if k not in plan.to_remove]
        if dry_run:
            ordered += [k for k in plan.to_add if k not in known]
        names = {run_id_of(k): plan.names[k] for k in ordered if k in plan.names}
        summary.behind_names += len(moves_to_current_names(ordered, names))
        states = partition_states(
            instance,
            experiment,
            settings_fingerprint(kind, subject_map),
            keys=ordered,
            database_id=database_id,
            committed=committed[experiment.slug],
            versions=plan.versions,
            full_refresh=full_refresh,
        )
        todo = {s.key: f"{s.state.value}: {s.reason}" for s in states if s.state != State.DONE}
        summary.todo.update(todo)
        summary.skipped += len(states) - len(todo)
        if not dry_run:
            gone = [s.key for s in states if s.state == State.MISSING and s.reason in ROWS_GONE]
            forget_partitions(instance, experiment, kind, gone)
            changed = [s.key for s in states if s.reason == RUN_CHANGED]
            report_changed_versions(instance, experiment, {k: plan.versions[k] for k in changed})
        ranges = contiguous_ranges(ordered, set(todo), config.partitions_per_run)
        work.append(ExperimentWork(experiment, kind, ranges))
    return work


def _apply_discovery(
    instance: dg.DagsterInstance,
    experiment: ExperimentRef,
    defs: dg.Definitions,
    to_add: list[str],
    to_remove: list[str],
    summary: ExtractSummary,
) -> None:
    if to_add:
        instance.add_dynamic_partitions(partitions_def_name(experiment), to_add)
    if not to_remove:
        return
    # The same job the discovery sensor requests: rows, then partitions, as events.
    removal = defs.resolve_job_def(removal_job_name(experiment)).execute_in_process(
        instance=instance,
        run_config={**removal_run_config(experiment, to_remove), **QUIET_LOGGERS},
        raise_on_error=False,
    )
    if removal.success:
        summary.removed += to_remove
        return
    for key in to_remove:
        summary.failed[key] = (
            f"run {key}: gone from MLflow, but its rows could not be removed "
            f"(Dagster run {removal.run_id})"
        )
