"""Re-keying partitions to their runs' current names (``source.partition_keys``) without losing
their checkpoints: keys written before names were added (the bare run id), and keys of runs
renamed in MLflow since they were discovered.

A partition moves in three steps: its new key is added; its latest run observation and, if it
is materialized, each asset's latest materialization are recorded again under the new key (same
metadata and provenance, so it stays done, or stale for the same reason); the old key is
deleted. Rows are keyed by run id and stay as they are. A move cut short is finished by the next
``rekey``: the old key is still there, and recording again is harmless (the latest wins).
A partition that is failed or missing carries nothing: under its new key it is missing, and
``extract`` or a backfill extracts it as it would have.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import dagster as dg

from mlruns_assets.defs.checkpoints import (
    Observed,
    observed_versions,
    run_observation,
    source_asset_key,
)
from mlruns_assets.defs.curves import curves_key
from mlruns_assets.defs.partitions import partitions_def_name
from mlruns_assets.runtime.settings import Kind
from mlruns_assets.source.partition_keys import partition_key, run_id_of
from mlruns_assets.source.tracking import ExperimentRef
from mlruns_assets.warehouse.catalog import assets_for_kind

_IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dataclass(frozen=True)
class KeyMove:
    """One partition's move from the key it has to the key its run's current name gives."""

    old: str
    new: str


def moves_to_current_names(keys: Iterable[str], names: Mapping[str, str | None]) -> list[KeyMove]:
    """The partitions whose key is not ``<current run name>@<run id>``, for the runs in
    ``names`` (run id -> current name); partitions of runs not listed stay as they are."""
    moves: list[KeyMove] = []  # bounded: one per partition of the experiment
    for key in keys:
        run_id = run_id_of(key)
        if run_id in names:
            wanted = partition_key(run_id, names[run_id])
            if wanted != key:
                moves.append(KeyMove(key, wanted))
    return moves


def runs_in_progress(instance: dg.DagsterInstance) -> list[str]:
    """Ids of the Dagster runs queued or running: a move must not race a run's events."""
    records = instance.get_run_records(dg.RunsFilter(statuses=_IN_PROGRESS), limit=5)
    return [r.dagster_run.run_id for r in records]


def partitioned_assets(experiment: ExperimentRef, kind: Kind) -> list[dg.AssetKey]:
    """The experiment's assets partitioned by run: its tables, and its curves if it has them."""
    keys = [dg.AssetKey([experiment.slug, asset.name]) for asset in assets_for_kind(kind)]
    return keys + ([curves_key(experiment)] if kind == Kind.CLASSIFICATION else [])


def move_partitions(
    instance: dg.DagsterInstance,
    experiment: ExperimentRef,
    kind: Kind,
    moves: list[KeyMove],
    on_moved: Callable[[int, int], None] = lambda done, total: None,
) -> None:
    """Move each partition to its new key, carrying its checkpoint (module docstring);
    ``on_moved(done, total)`` after each."""
    if not moves:
        return
    name = partitions_def_name(experiment)
    existing = set(instance.get_dynamic_partitions(name))
    instance.add_dynamic_partitions(name, [m.new for m in moves if m.new not in existing])
    partitions = dg.DynamicPartitionsDefinition(name=name)
    old_keys = [m.old for m in moves]
    # Statuses once per asset: Dagster computes one over all of an asset's partitions.
    materialized = {
        asset: _materialized(instance, asset, partitions, old_keys)
        for asset in partitioned_assets(experiment, kind)
    }
    observed = observed_versions(instance, experiment, old_keys)
    pointer = "dagster/input_event_pointer/" + "/".join(source_asset_key(experiment).path)
    for done, move in enumerate(moves, start=1):
        carried = _carry_observation(instance, experiment, move, observed.get(move.old))
        for asset, keys in materialized.items():
            if move.old in keys:  # failed or missing: nothing vouches for rows, nothing to carry
                _carry_materialization(instance, asset, move, (pointer, carried))
        instance.delete_dynamic_partition(name, move.old)
        on_moved(done, len(moves))


def _materialized(
    instance: dg.DagsterInstance,
    asset: dg.AssetKey,
    partitions: dg.DynamicPartitionsDefinition,
    keys: list[str],
) -> set[str]:
    statuses = instance.get_status_by_partition(asset, keys, partitions) or {}
    return {k for k, status in statuses.items() if status == dg.AssetPartitionStatus.MATERIALIZED}


def _carry_observation(
    instance: dg.DagsterInstance,
    experiment: ExperimentRef,
    move: KeyMove,
    observed: Observed | None,
) -> Observed | None:
    if observed is None:
        return None
    instance.report_runless_asset_event(run_observation(experiment, move.new, observed.version))
    return observed_versions(instance, experiment, [move.new]).get(move.new)


def _carry_materialization(
    instance: dg.DagsterInstance,
    asset: dg.AssetKey,
    move: KeyMove,
    source: tuple[str, Observed | None],
) -> None:
    records_filter = dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[move.old])
    (record,) = instance.fetch_materializations(records_filter, limit=1).records
    old = record.asset_materialization
    assert old is not None  # a materialization record holds one
    tags = dict(old.tags or {})
    pointer, observed = source
    if observed is not None and pointer in tags:  # now the observation under the new key
        tags[pointer] = str(observed.storage_id)
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=asset,
            partition=move.new,
            description=old.description,
            metadata=old.metadata,
            tags=tags,
        )
    )
