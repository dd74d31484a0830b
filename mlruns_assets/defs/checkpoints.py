"""The checkpoint as Dagster records it: what each partition's latest materialization vouches
for (``pipeline.checkpoint`` decides), the MLflow runs as an observable source whose data
version per partition is the run's version, and the provenance tags that let the UI show a
partition as stale when its settings or its run changed.

The provenance tag names are Dagster's own (``dagster/code_version`` ...): materializations
reported from inside a step do not get them from Dagster, so the step writes them itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import dagster as dg

from mlruns_assets.defs.partitions import partitions_def_name
from mlruns_assets.defs.resources import MlflowTrackingResource
from mlruns_assets.pipeline.checkpoint import (
    PartitionState,
    Recorded,
    SettingsFingerprint,
    State,
    classify,
    data_version,
)
from mlruns_assets.runtime.settings import Kind
from mlruns_assets.source.partition_keys import keys_by_run_id, run_id_of
from mlruns_assets.source.tracking import ExperimentRef, TrackingStore, run_version
from mlruns_assets.warehouse.catalog import assets_for_kind
from mlruns_assets.warehouse.duckdb_writer import DuckDBWarehouse
from mlruns_assets.warehouse.identity import committed_run_ids, read_database_id

CODE_VERSION_TAG = "dagster/code_version"
DATA_VERSION_TAG = "dagster/data_version"
_USER_PROVIDED_TAG = "dagster/data_version_is_user_provided"
ROOT_RUN_TAG = "dagster/root_run_id"
_PAGE = 1000


def source_asset_key(experiment: ExperimentRef) -> dg.AssetKey:
    """The experiment's MLflow runs, as the observable source its extraction depends on."""
    return dg.AssetKey([experiment.slug, "mlflow_runs"])


@dataclass(frozen=True)
class Observed:
    """The latest observed version of a run (partition) and the event that recorded it."""

    version: str
    storage_id: int


def latest_records(
    instance: dg.DagsterInstance,
    asset_key: dg.AssetKey,
    event_type: dg.DagsterEventType,
    keys: Iterable[str] | None = None,
) -> list[dg.EventLogRecord]:
    """The latest event of ``event_type`` of each partition (of ``keys``, default all): one
    query for the latest storage id per partition, then those events only, a page at a time.
    Reading every event instead grows with the history (re-extractions, re-keyed partitions)."""
    wanted = set(keys) if keys is not None else None
    if wanted is not None and not wanted:
        return []  # an empty filter would read every partition's latest event
    # A few keys (a step's new partition) are asked of the query itself, so the per-partition
    # path stays one small query; many are filtered here (a bound parameter per key would
    # overrun SQLite's limit on large experiments).
    asked = wanted if wanted is not None and len(wanted) <= _PAGE else None
    latest = instance.get_latest_storage_id_by_partition(asset_key, event_type, asked)
    ids = sorted(i for k, i in latest.items() if wanted is None or k in wanted)
    fetch = (
        instance.fetch_observations
        if event_type == dg.DagsterEventType.ASSET_OBSERVATION
        else instance.fetch_materializations
    )
    records: list[dg.EventLogRecord] = []  # bounded: one per partition of the asset
    for start in range(0, len(ids), _PAGE):
        page = ids[start : start + _PAGE]
        records_filter = dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=page)
        records += fetch(records_filter, limit=len(page)).records
    return records


def observed_versions(
    instance: dg.DagsterInstance, experiment: ExperimentRef, keys: Iterable[str] | None = None
) -> dict[str, Observed]:
    """Partition -> its latest observation of the runs source (of ``keys``, default all)."""
    found: dict[str, Observed] = {}  # bounded: one per partition of the experiment
    observations = latest_records(
        instance, source_asset_key(experiment), dg.DagsterEventType.ASSET_OBSERVATION, keys
    )
    for record in observations:
        observation = record.asset_observation
        version = observation.tags.get(DATA_VERSION_TAG) if observation else None
        if record.partition_key and version:
            found[record.partition_key] = Observed(version, record.storage_id)
    return found


def observe_in_step(
    context: dg.AssetExecutionContext, experiment: ExperimentRef, key: str, version: str
) -> Observed:
    """Record a step's observation of run ``key`` at ``version``; what it recorded. Only the
    new event's storage id is read back (one query): its version is the one just written."""
    context.log_event(run_observation(experiment, key, version))
    latest = context.instance.get_latest_storage_id_by_partition(
        source_asset_key(experiment), dg.DagsterEventType.ASSET_OBSERVATION, {key}
    )
    return Observed(version, latest[key])


def run_observation(experiment: ExperimentRef, key: str, version: str) -> dg.AssetObservation:
    """An observation of one run's version (reported by ``extract``, the sensor or a step)."""
    return dg.AssetObservation(
        asset_key=source_asset_key(experiment),
        partition=key,
        tags={DATA_VERSION_TAG: version, _USER_PROVIDED_TAG: "true"},
    )


def report_changed_versions(
    instance: dg.DagsterInstance, experiment: ExperimentRef, versions: Mapping[str, str]
) -> list[str]:
    """Record an observation for each run whose version differs from the latest observed one
    (or was never observed); returns those partitions."""
    observed = observed_versions(instance, experiment)
    changed = [k for k, v in versions.items() if k not in observed or observed[k].version != v]
    for key in changed:
        instance.report_runless_asset_event(run_observation(experiment, key, versions[key]))
    return changed


def provenance_tags(
    experiment: ExperimentRef, fingerprint: SettingsFingerprint, observed: Observed
) -> dict[str, str]:
    """Tags of a materialization extracted from run version ``observed``."""
    source = "/".join(source_asset_key(experiment).path)
    return {
        CODE_VERSION_TAG: fingerprint.code_version,
        DATA_VERSION_TAG: data_version(fingerprint.code_version, observed.version),
        f"dagster/input_data_version/{source}": observed.version,
        f"dagster/input_event_pointer/{source}": str(observed.storage_id),
    }


def recorded_partitions(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, keys: Iterable[str] | None = None
) -> dict[str, Recorded]:
    """Partition -> what its latest materialization recorded (of ``keys``, default all)."""
    found: dict[str, Recorded] = {}  # bounded: one per partition of the asset
    event = dg.DagsterEventType.ASSET_MATERIALIZATION
    for record in latest_records(instance, asset_key, event, keys):
        materialization = record.asset_materialization
        if record.partition_key is None or materialization is None:
            continue
        meta = {k: v.value for k, v in materialization.metadata.items()}
        found[record.partition_key] = Recorded(
            database_id=_text(meta.get("database_id")),
            source_version=_text(meta.get("source_version")),
            settings={k: str(v) for k, v in meta.items() if k.startswith("settings/")},
        )
    return found


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def build_runs_source(
    experiment: ExperimentRef, partitions_def: dg.DynamicPartitionsDefinition
) -> dg.SourceAsset:
    """The observable source asset of an experiment's MLflow runs: "Observe" in the UI records
    each known run's current version, so partitions whose run changed show as stale."""

    @dg.observable_source_asset(
        key=source_asset_key(experiment),
        partitions_def=partitions_def,
        group_name=experiment.slug,
        description=f"The runs of MLflow experiment '{experiment.name}' (read only). Each "
        "partition's data version is a digest of its run's MLflow record: a new metric point, "
        "param, tag or end time makes the extracted partition stale.",
    )
    def mlflow_runs(
        context: dg.AssetExecutionContext, mlflow_tracking: MlflowTrackingResource
    ) -> dg.DataVersionsByPartition:
        known = keys_by_run_id(context.instance.get_dynamic_partitions(partitions_def.name or ""))
        store = mlflow_tracking.store()
        versions = {
            known[run.info.run_id]: dg.DataVersion(run_version(run))
            for run in store.iter_runs(experiment.experiment_id)
            if run.info.run_id in known
        }
        return dg.DataVersionsByPartition(versions)

    return mlflow_runs


def partition_states(
    instance: dg.DagsterInstance,
    experiment: ExperimentRef,
    fingerprint: SettingsFingerprint,
    *,
    keys: list[str],
    database_id: str | None,
    committed: set[str],
    versions: Mapping[str, str],
    full_refresh: bool = False,
) -> list[PartitionState]:
    """Each partition's state for this database (``database_id`` None: none yet), these
    settings and the runs' current versions; a partition is done only if every asset of the
    experiment is."""
    partitions = dg.DynamicPartitionsDefinition(name=partitions_def_name(experiment))
    worst: dict[str, PartitionState] = {}  # bounded: one per partition of the experiment
    for asset in assets_for_kind(fingerprint.kind):
        asset_key = dg.AssetKey([experiment.slug, asset.name])
        recorded = recorded_partitions(instance, asset_key, keys)
        status = instance.get_status_by_partition(asset_key, keys, partitions) or {}
        for key in keys:
            state = classify(
                key,
                recorded.get(key),
                failed=status.get(key) == dg.AssetPartitionStatus.FAILED,
                rows_present=run_id_of(key) in committed,
                database_id=database_id or "",
                fingerprint=fingerprint,
                source_version=versions.get(key),
                full_refresh=full_refresh,
            )
            if key not in worst or worst[key].state == State.DONE:
                worst[key] = state
    return [worst[key] for key in keys]


def partitions_by_asset(instance: dg.DagsterInstance, run_id: str) -> dict[dg.AssetKey, set[str]]:
    """The partitions the run materialized, per asset."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    by_asset: dict[dg.AssetKey, set[str]] = {}  # bounded: one run's assets and partitions
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is not None and event.asset_key is not None and event.partition:
            by_asset.setdefault(event.asset_key, set()).add(event.partition)
    return by_asset


def materialized_in_run(
    instance: dg.DagsterInstance, run_id: str, assets: list[dg.AssetKey]
) -> set[str]:
    """Partitions materialized by the run in every one of the experiment's assets."""
    by_asset = partitions_by_asset(instance, run_id)
    return set.intersection(*(by_asset.get(a, set()) for a in assets)) if assets else set()


def earlier_attempts(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    """The other runs of ``run``'s run group (its earlier attempts, when it is a retry)."""
    # Dagster finds a run group through this tag (its run storage says so).
    try:
        group = instance.get_run_group(run.tags.get(ROOT_RUN_TAG) or run.root_run_id or run.run_id)
    except dg.DagsterRunNotFoundError:  # the first attempt deleted: nothing to go by
        return []
    return [r.run_id for r in group[1] if r.run_id != run.run_id] if group else []


def kept_on_resume(
    instance: dg.DagsterInstance,
    experiment: ExperimentRef,
    fingerprint: SettingsFingerprint,
    keys: list[str],
    *,
    run: dg.DagsterRun,
    store: TrackingStore,
    warehouse: DuckDBWarehouse,
    on_wait: Callable[[float], None] | None = None,
) -> set[str]:
    """Of ``run``, resumed from its failure, the partitions an earlier attempt (a run of its
    group) committed and that are still done by the rule ``extract`` applies (recorded
    against this database, rows present, same run version and settings): not extracted again.
    Partitions done before the failed attempt are not kept: that attempt was to redo them."""
    assets = [dg.AssetKey([experiment.slug, a.name]) for a in assets_for_kind(fingerprint.kind)]
    earlier: set[str] = set()  # bounded: partitions of one run group's ranges
    for attempt in earlier_attempts(instance, run):
        earlier |= materialized_in_run(instance, attempt, assets)
    candidates = [k for k in keys if k in earlier]
    if not candidates or not warehouse.exists():
        return set()
    with warehouse.get_connection(read_only=True, on_wait=on_wait) as conn:
        database_id = read_database_id(conn)
        committed = committed_run_ids(conn, experiment.slug)
    if database_id is None:
        return set()
    runs = store.runs_by_id(experiment.experiment_id, [run_id_of(k) for k in candidates])
    versions = {k: run_version(runs[run_id_of(k)]) for k in candidates if run_id_of(k) in runs}
    states = partition_states(
        instance,
        experiment,
        fingerprint,
        keys=candidates,
        database_id=database_id,
        committed=committed,
        versions=versions,
    )
    return {s.key for s in states if s.state == State.DONE}


def forget_partitions(
    instance: dg.DagsterInstance, experiment: ExperimentRef, kind: Kind, keys: list[str]
) -> None:
    """Wipe the materializations of partitions whose rows are not in this database, so the UI
    shows them missing too: status never vouches for rows that are not there. Dagster's SQLite
    event log cannot wipe single partitions (Postgres can): there the partitions are
    re-extracted right away (they are missing), and a failure marks them failed."""
    if not keys:
        return
    for asset in assets_for_kind(kind):
        try:
            instance.wipe_asset_partitions(dg.AssetKey([experiment.slug, asset.name]), keys)
        except NotImplementedError:
            return
