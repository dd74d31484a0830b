"""The discovery sensor against a real MLflow SQLite store, a real DuckDB file and a persistent
Dagster instance. Nothing is mocked: the store is written with ``MlflowClient`` and the sensor is
evaluated the way the daemon evaluates it (``evaluate_tick``). A tick in a test does not apply its
partition requests, so each test applies them to the instance itself, as the daemon would."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import mlflow
import pytest

from mlruns_assets.cli.extract import run_extract
from mlruns_assets.defs.assets import build_extraction_asset, extraction_job
from mlruns_assets.defs.partitions import partitions_def_name
from mlruns_assets.defs.project import build_definitions
from mlruns_assets.defs.removal import build_removal_job
from mlruns_assets.defs.resources import build_resources
from mlruns_assets.defs.sensors import build_discovery_sensor
from mlruns_assets.pipeline.checkpoint import settings_fingerprint
from mlruns_assets.runtime.instance import open_instance
from mlruns_assets.runtime.settings import Kind, Settings
from mlruns_assets.source.partition_keys import run_id_of
from mlruns_assets.source.tracking import ExperimentRef, TrackingStore

EXPERIMENT = "Generic"
SENSOR = "generic_discovery_sensor"
PARTITIONS = "generic_runs"
DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Template:
    """A small MLflow store written once per module; each test works on its own copy."""

    folder: Path
    finished: list[str]  # FINISHED, non-synthetic, in end-time order: the eligible runs
    running: str
    failed: str
    synthetic_tag: str
    synthetic_name: str


@dataclass(frozen=True)
class Store:
    uri: str
    client: mlflow.MlflowClient
    runs: Template
    database: Path

    def config(self, **kwargs: object) -> Settings:
        return Settings(tracking_uri=self.uri, database=str(self.database), **kwargs)  # type: ignore[arg-type]


def _log_run(
    client: mlflow.MlflowClient,
    experiment_id: str,
    name: str,
    status: str | None,
    end_time: int | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    run_id = client.create_run(experiment_id, run_name=name, tags=tags or {}).info.run_id
    client.log_param(run_id, "model", name)
    for step in range(3):
        client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
    client.log_metric(run_id, "auroc", 0.8, step=0)
    if status is not None:
        client.set_terminated(run_id, status, end_time=end_time)
    return run_id


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    folder = tmp_path_factory.mktemp("mlflow_template")
    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    exp = client.create_experiment(EXPERIMENT, artifact_location=(folder / "artifacts").as_uri())
    base = int(time.time() * 1000) - 3600 * 1000  # an hour ago, one second apart
    first = _log_run(client, exp, "first", "FINISHED", base + 1000)
    second = _log_run(client, exp, "second", "FINISHED", base + 2000)
    # The FAILED run ended long before the others: a cursor past it must not hide it when
    # failed runs become admitted later.
    failed = _log_run(client, exp, "failed", "FAILED", base - DAY_MS)
    third = _log_run(client, exp, "third", "FINISHED", base + 3000)
    tagged = _log_run(client, exp, "tagged", "FINISHED", base + 4000, tags={"is_synthetic": "true"})
    named = _log_run(client, exp, "__SYNTHETIC_x", "FINISHED", base + 5000)
    running = _log_run(client, exp, "running", None)
    return Template(folder, [first, second, third], running, failed, tagged, named)


@pytest.fixture
def store(template: Template, tmp_path: Path) -> Store:
    """A private copy of the template store (same run ids), and a database path."""
    shutil.copytree(template.folder, tmp_path / "mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    return Store(uri, mlflow.MlflowClient(uri), template, tmp_path / "out.duckdb")


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def tick(
    sensor: dg.SensorDefinition,
    instance: dg.DagsterInstance,
    config: Settings,
    cursor: str | None,
) -> dg.SensorResult:
    """One evaluation, as the daemon does it (resources bound, run requests validated)."""
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=build_resources(config)
    )
    return sensor.evaluate_tick(context)  # type: ignore[return-value]


def adds(data: object) -> list[str]:
    requests = [
        r
        for r in data.dynamic_partitions_requests  # type: ignore[attr-defined]
        if isinstance(r, dg.AddDynamicPartitionsRequest)
    ]
    assert all(r.partitions_def_name == PARTITIONS for r in requests)
    return [run_id_of(k) for r in requests for k in r.partition_keys]


def deletes(data: object) -> list[str]:
    requests = [
        r
        for r in data.dynamic_partitions_requests  # type: ignore[attr-defined]
        if isinstance(r, dg.DeleteDynamicPartitionsRequest)
    ]
    assert all(r.partitions_def_name == PARTITIONS for r in requests)
    return [run_id_of(k) for r in requests for k in r.partition_keys]


def partition_runs(instance: dg.DagsterInstance) -> list[str]:
    """The run ids of the experiment's partitions, in partition order."""
    return [run_id_of(k) for k in instance.get_dynamic_partitions(PARTITIONS)]


def apply(data: object, instance: dg.DagsterInstance) -> None:
    """What the sensor daemon does with a tick's partition requests."""
    for request in data.dynamic_partitions_requests:  # type: ignore[attr-defined]
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


def requested_keys(
    data: object, instance: dg.DagsterInstance, experiment: ExperimentRef
) -> list[str]:
    """The partition keys the tick's run requests materialize, resolved against the instance
    (a range is start..end in the partitions' insertion order: apply the adds first)."""
    ordered = instance.get_dynamic_partitions(partitions_def_name(experiment))
    keys: list[str] = []
    for request in data.run_requests:  # type: ignore[attr-defined]
        if request.job_name != f"{experiment.slug}_extraction_job":
            continue
        tags = request.tags
        assert tags.get("dagster/sensor_name") == SENSOR
        if "dagster/partition" in tags:
            keys.append(tags["dagster/partition"])
            continue
        start = tags["dagster/asset_partition_range_start"]
        end = tags["dagster/asset_partition_range_end"]
        assert ordered.index(start) <= ordered.index(end)
        keys += ordered[ordered.index(start) : ordered.index(end) + 1]
    return [run_id_of(k) for k in keys]


def generic_experiment(uri: str) -> ExperimentRef:
    return TrackingStore(uri).experiments([EXPERIMENT])[0]


def rows_by_run(database: Path, table: str) -> dict[str, int]:
    with duckdb.connect(str(database), read_only=True) as conn:
        pairs = conn.execute(f"SELECT run_id, count(*) FROM generic.{table} GROUP BY 1").fetchall()
    return dict(pairs)


# --------------------------------------------------------------------------- tests


def test_definitions_have_one_discovery_sensor_targeting_the_job(store: Store) -> None:
    defs = build_definitions(store.config())
    sensor = defs.resolve_sensor_def(SENSOR)
    assert [s.name for s in defs.sensors] == [SENSOR, "extraction_stall_sensor"]
    assert {t.job_name for t in sensor.targets} == {"generic_extraction_job", "generic_removal_job"}
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    # Sensors only request: the warehouse is written by runs, never by a tick.
    assert set(sensor.required_resource_keys) == {"mlflow_tracking"}


def test_runs_cover_the_configured_number_of_partitions(
    store: Store, instance: dg.DagsterInstance
) -> None:
    """``partitions_per_run`` sizes the sensor's run requests and the backfill's runs alike."""
    config = store.config(partitions_per_run=2)
    defs = build_definitions(config)
    asset = defs.resolve_assets_def(dg.AssetKey(["generic", "runs"]))
    assert asset.backfill_policy == dg.BackfillPolicy.multi_run(max_partitions_per_run=2)
    first = tick(defs.resolve_sensor_def(SENSOR), instance, config, None)
    apply(first, instance)
    extraction = [r for r in first.run_requests if r.job_name == "generic_extraction_job"]
    assert len(store.runs.finished) == 3
    assert [len(requested_keys_of(r, instance)) for r in extraction] == [2, 1]
    assert requested_keys(first, instance, generic_experiment(store.uri)) == store.runs.finished


def requested_keys_of(request: dg.RunRequest, instance: dg.DagsterInstance) -> list[str]:
    if "dagster/partition" in request.tags:
        return [request.tags["dagster/partition"]]
    ordered = instance.get_dynamic_partitions(PARTITIONS)
    start = ordered.index(request.tags["dagster/asset_partition_range_start"])
    return ordered[start : ordered.index(request.tags["dagster/asset_partition_range_end"]) + 1]


def test_discovery_lifecycle(store: Store, instance: dg.DagsterInstance) -> None:
    runs = store.runs
    config = store.config()
    sensor = build_definitions(config).resolve_sensor_def(SENSOR)
    experiment = generic_experiment(store.uri)

    # First tick: exactly the FINISHED, non-synthetic runs, oldest end time first.
    first = tick(sensor, instance, config, None)
    assert first.skip_message is None
    assert adds(first) == runs.finished
    assert deletes(first) == []
    assert first.cursor and json.loads(first.cursor)["end_time"] > 0
    assert instance.get_dynamic_partitions(PARTITIONS) == []  # a tick applies nothing itself
    apply(first, instance)
    assert partition_runs(instance) == runs.finished
    # Keys carry the run's name, so the partitions page finds a run by name.
    names = [store.client.get_run(run_id).info.run_name for run_id in runs.finished]
    assert names == ["first", "second", "third"]
    assert instance.get_dynamic_partitions(PARTITIONS) == [
        f"{name}@{run_id}" for name, run_id in zip(names, runs.finished, strict=True)
    ]
    requested = requested_keys(first, instance, experiment)
    assert sorted(requested) == sorted(runs.finished)  # every new key, each exactly once
    assert len({r.run_key for r in first.run_requests}) == len(first.run_requests)

    # Nothing changed: skip, with no requests of any kind.
    second = tick(sensor, instance, config, first.cursor)
    assert second.skip_message
    assert second.run_requests == [] and second.dynamic_partitions_requests == []
    cursor = second.cursor or first.cursor
    direct = sensor(
        dg.build_sensor_context(instance=instance, cursor=cursor, resources=build_resources(config))
    )
    assert isinstance(direct, dg.SkipReason)  # what the sensor function itself returns

    # The RUNNING run finishes: the next tick adds it alone, as a one-partition run.
    store.client.set_terminated(runs.running, "FINISHED")
    third = tick(sensor, instance, config, cursor)
    assert adds(third) == [runs.running]
    assert [r.tags.get("dagster/partition") for r in third.run_requests] == [
        f"running@{runs.running}"
    ]
    apply(third, instance)
    assert requested_keys(third, instance, experiment) == [runs.running]
    cursor = third.cursor
    assert json.loads(cursor)["end_time"] >= json.loads(first.cursor)["end_time"]
    assert tick(sensor, instance, config, cursor).skip_message

    # Admitting failed runs (same sensor name, so the persisted cursor carries over) picks up
    # the FAILED run although it ended before the cursor; synthetic runs stay out.
    admitting = store.config(admit_failed_runs=True)
    sensor_admitting = build_definitions(admitting).resolve_sensor_def(SENSOR)
    fourth = tick(sensor_admitting, instance, admitting, cursor)
    assert adds(fourth) == [runs.failed]
    apply(fourth, instance)
    assert requested_keys(fourth, instance, experiment) == [runs.failed]
    fifth = tick(sensor_admitting, instance, admitting, fourth.cursor)
    assert fifth.skip_message, adds(fifth)
    partitions = set(partition_runs(instance))
    assert partitions == {*runs.finished, runs.running, runs.failed}
    assert runs.synthetic_tag not in partitions and runs.synthetic_name not in partitions


def test_run_that_ended_just_before_the_cursor_is_not_lost(
    store: Store, instance: dg.DagsterInstance
) -> None:
    """A run whose end time is a little older than the cursor (the client's clock lags, or its
    final write reached the store after a later run's) must still be discovered."""
    config = store.config()
    sensor = build_definitions(config).resolve_sensor_def(SENSOR)
    first = tick(sensor, instance, config, None)
    apply(first, instance)
    cursor_time = json.loads(first.cursor)["end_time"]
    store.client.set_terminated(store.runs.running, "FINISHED", end_time=cursor_time - 60_000)
    late = tick(sensor, instance, config, first.cursor)
    assert adds(late) == [store.runs.running]


def test_deleted_run_loses_its_partition_and_rows(store: Store, tmp_path: Path) -> None:
    config = store.config()
    home = tmp_path / "home"
    summary = run_extract(config, home, write=lambda _: None)
    assert sorted(map(run_id_of, summary.materialized)) == sorted(store.runs.finished)
    assert summary.failed == {}
    runs_before = rows_by_run(store.database, "runs")
    history_before = rows_by_run(store.database, "metric_history")
    assert set(runs_before) == set(store.runs.finished)
    assert set(history_before) == set(store.runs.finished)
    assert all(n == 4 for n in history_before.values())  # 3 loss points + 1 auroc point

    gone = store.runs.finished[1]
    store.client.delete_run(gone)
    defs = build_definitions(config)
    sensor = defs.resolve_sensor_def(SENSOR)
    with open_instance(home) as instance:  # the instance the extraction recorded into
        assert set(partition_runs(instance)) == set(store.runs.finished)
        data = tick(sensor, instance, config, None)
        assert adds(data) == [] and deletes(data) == []
        # The tick only requests the removal run; it writes nothing itself.
        (request,) = data.run_requests
        assert request.job_name == "generic_removal_job"
        assert rows_by_run(store.database, "runs") == runs_before
        again = tick(sensor, instance, config, None)
        assert [r.run_key for r in again.run_requests] == [request.run_key]  # deduplicated

        # The removal run (as the daemon launches it) deletes the rows, then the partition,
        # and leaves an observation per asset naming the run.
        result = defs.resolve_job_def("generic_removal_job").execute_in_process(
            instance=instance, run_config=request.run_config
        )
        assert result.success
        kept = {k: v for k, v in runs_before.items() if k != gone}
        assert rows_by_run(store.database, "runs") == kept
        assert rows_by_run(store.database, "metric_history") == {
            k: v for k, v in history_before.items() if k != gone
        }
        assert set(partition_runs(instance)) == set(kept)
        observations = instance.fetch_observations(dg.AssetKey(["generic", "runs"]), limit=5)
        (observed,) = observations.records
        removed = observed.asset_observation.metadata["removed_runs"].value  # type: ignore[union-attr]
        assert removed == [gone]
        after = tick(sensor, instance, config, data.cursor)
        assert after.skip_message
        assert after.dynamic_partitions_requests == [] and after.run_requests == []


def test_sensor_without_run_requests_still_adds_partitions_in_batches(
    store: Store, instance: dg.DagsterInstance
) -> None:
    config = store.config()
    experiment = generic_experiment(store.uri)
    asset = build_extraction_asset(experiment, settings_fingerprint(Kind.GENERIC, None), 50)
    job = extraction_job(experiment, asset)
    removal = build_removal_job(experiment, Kind.GENERIC)
    sensor = build_discovery_sensor(experiment, job, removal, request_runs=False, batch_size=2)
    assert partitions_def_name(experiment) == PARTITIONS

    first = tick(sensor, instance, config, None)
    assert first.run_requests == []
    assert adds(first) == store.runs.finished[:2]
    apply(first, instance)
    second = tick(sensor, instance, config, first.cursor)
    assert second.run_requests == []
    assert adds(second) == store.runs.finished[2:]
    apply(second, instance)
    assert tick(sensor, instance, config, second.cursor).skip_message
    assert partition_runs(instance) == store.runs.finished
