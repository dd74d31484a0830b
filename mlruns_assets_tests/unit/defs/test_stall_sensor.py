"""The stall sensor's decisions as plain functions, the one sensor per code location, and which
runs it watches: every run that executes an extraction step, whatever its job."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import dagster as dg
import pytest

from mlruns_assets.defs.project import build_definitions
from mlruns_assets.defs.stall_sensor import (
    SENSOR_NAME,
    ExtractionTarget,
    WatchedRun,
    extraction_runs,
    extraction_targets,
    fail_stalled_runs,
    find_stalled_runs,
    pending_partitions,
    run_partition_keys,
    run_target,
    stall_message,
)
from mlruns_assets.runtime.progress import PROGRESS_PREFIX
from mlruns_assets.runtime.settings import ENV_PREFIX, Kind, Settings
from mlruns_assets.source.tracking import ExperimentRef

EXPERIMENTS = [ExperimentRef("1", "Classification"), ExperimentRef("2", "Imputation")]
KINDS = {"Classification": Kind.CLASSIFICATION, "Imputation": Kind.IMPUTATION}
PARTITIONS_BY_JOB = {
    "classification_extraction_job": "classification_runs",
    "imputation_extraction_job": "imputation_runs",
}


# --------------------------------------------------------------------------- plain functions
def test_find_stalled_runs_picks_runs_silent_past_the_timeout_longest_first() -> None:
    runs = [
        WatchedRun("fresh", last_event_at=995.0),
        WatchedRun("edge", last_event_at=910.0),  # exactly at the timeout: not yet
        WatchedRun("old", last_event_at=100.0),
        WatchedRun("stale", last_event_at=900.0),
    ]
    stalled = find_stalled_runs(runs, now=1000.0, timeout_seconds=90.0)
    assert [(s.run_id, s.idle_seconds) for s in stalled] == [("old", 900.0), ("stale", 100.0)]
    assert find_stalled_runs([], now=1000.0, timeout_seconds=90.0) == []


def test_run_partition_keys_and_pending_partitions() -> None:
    ordered = ["a", "b", "c", "d", "e"]
    assert run_partition_keys({"dagster/partition": "c"}, ordered) == ["c"]
    tags = {
        "dagster/asset_partition_range_start": "b",
        "dagster/asset_partition_range_end": "d",
    }
    assert run_partition_keys(tags, ordered) == ["b", "c", "d"]
    assert run_partition_keys({**tags, "dagster/asset_partition_range_end": "zz"}, ordered) == []
    assert run_partition_keys({}, ordered) == []
    assert pending_partitions(["b", "c", "d"], {"b", "x"}) == ["c", "d"]


def test_stall_message_is_one_line_naming_partitions_and_last_progress() -> None:
    pending = [f"k{i}" for i in range(9)]
    message = stall_message(97.4, 90.0, pending, "[progress] 3/12 partitions | loading x")
    assert message == (
        "stalled in partition k0 (not reached: k1, k2, k3, k4 and 4 more): no event for 97 s "
        "(stall timeout 90 s); last progress: [progress] 3/12 partitions | loading x"
    )
    assert stall_message(5, 4, [], None).endswith("last progress: none yet")
    assert "\n" not in message


def test_one_stall_sensor_per_code_location_configured_from_the_environment() -> None:
    env = Settings(
        tracking_uri="sqlite:///unused.db",
        database="unused.duckdb",
        kinds=KINDS,  # known kinds: the (absent) store is not opened to infer them
        stall_timeout_seconds=42,
        stall_sensor_interval_seconds=7,
    ).to_env()
    assert env[f"{ENV_PREFIX}STALL_TIMEOUT_SECONDS"] == "42"
    config = Settings.from_env(env)
    assert config is not None
    defs = build_definitions(config, EXPERIMENTS)
    stall = [s for s in defs.sensors or [] if s.name == SENSOR_NAME]
    assert len(stall) == 1
    (sensor,) = stall
    assert isinstance(sensor, dg.SensorDefinition)
    assert sensor.minimum_interval_seconds == 7
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert "logged nothing for 42 s" in (sensor.description or "")


def test_stall_message_says_how_many_partitions_committed_and_how_old_its_last_line_is() -> None:
    message = stall_message(
        12.2,
        8.0,
        ["k10", "k11"],
        "[progress] 1/12 partitions (0 failed) | done k1",
        committed=10,
        total=12,
        progress_age_seconds=31.6,
    )
    assert message == (
        "stalled in partition k10 (not reached: k11): no event for 12 s (stall timeout 8 s); "
        "committed 10 of 12 partitions; last progress (32 s earlier): "
        "[progress] 1/12 partitions (0 failed) | done k1"
    )
    assert "committed 3 partitions;" in stall_message(9, 8, [], None, committed=3)


# --------------------------------------------------------------------------- watched runs
@pytest.fixture(scope="module")
def definitions() -> dg.Definitions:
    config = Settings(tracking_uri="sqlite:///unused.db", database="unused.duckdb", kinds=KINDS)
    return build_definitions(config, EXPERIMENTS)


def test_the_targets_are_the_real_extraction_jobs_and_steps(definitions: dg.Definitions) -> None:
    targets = extraction_targets(PARTITIONS_BY_JOB)
    asset_job = definitions.resolve_implicit_global_asset_job_def()
    for target in targets:
        job = definitions.resolve_job_def(target.job_name)
        assert list(job.graph.node_dict) == [target.step_key]  # the one extraction op
        assert target.step_key in asset_job.graph.node_dict  # and __ASSET_JOB runs it too
        partitions = job.partitions_def
        assert isinstance(partitions, dg.DynamicPartitionsDefinition)
        assert partitions.name == target.partitions_def_name


def test_run_target_by_job_name_else_by_the_steps_it_executes() -> None:
    targets = extraction_targets(PARTITIONS_BY_JOB)
    classification, imputation = targets

    def never() -> Iterator[str]:
        raise AssertionError("an extraction job's plan need not be read")

    assert run_target("classification_extraction_job", never, targets) == classification
    asset_run = ["classification__mlflow_runs", "imputation_extraction"]
    assert run_target("__ASSET_JOB", lambda: asset_run, targets) == imputation
    assert run_target("__ASSET_JOB", lambda: ["classification__mlflow_runs"], targets) is None
    assert run_target("classification_removal_job", lambda: ["remove"], targets) is None
    assert classification == ExtractionTarget(
        "classification_extraction_job", "classification_extraction", "classification_runs"
    )


def _log(instance: dg.DagsterInstance, run: dg.DagsterRun, message: str, at: float) -> None:
    instance.handle_new_event(
        dg.EventLogEntry(
            error_info=None,
            level=logging.INFO,
            user_message=message,
            run_id=run.run_id,
            timestamp=at,
            dagster_event=None,
            job_name=run.job_name,
        )
    )


def test_silent_runs_of_the_asset_job_are_failed_like_those_of_the_extraction_jobs(
    definitions: dg.Definitions,
) -> None:
    """A run launched from the asset page or a backfill (``__ASSET_JOB``, with an asset
    selection) is watched; an observation of the MLflow runs in the same job is not."""
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("classification_runs", ["p0", "p1", "p2"])
        asset_job = definitions.resolve_implicit_global_asset_job_def()
        started = dg.DagsterRunStatus.STARTED
        extraction = {dg.AssetKey(["classification", a]) for a in ("runs", "stratos")}
        backfill = instance.create_run_for_job(
            asset_job,
            asset_selection=extraction,
            status=started,
            tags={
                "dagster/asset_partition_range_start": "p1",
                "dagster/asset_partition_range_end": "p2",
            },
        )
        observation = instance.create_run_for_job(
            asset_job,
            asset_selection={dg.AssetKey(["classification", "mlflow_runs"])},
            status=started,
        )
        job_run = instance.create_run_for_job(
            definitions.resolve_job_def("imputation_extraction_job"),
            status=started,
            tags={"dagster/partition": "q"},
        )
        now = time.time()
        _log(instance, backfill, f"{PROGRESS_PREFIX} 0/2 partitions | loading metrics/m", now - 5)
        watched = extraction_runs(instance, extraction_targets(PARTITIONS_BY_JOB))
        assert {r.dagster_run.run_id: t.step_key for r, t in watched} == {
            backfill.run_id: "classification_extraction",
            job_run.run_id: "imputation_extraction",
        }

        outcomes = fail_stalled_runs(
            instance, PARTITIONS_BY_JOB, 60.0, now=now + 100, grace_seconds=0
        )
        assert len(outcomes) == 2, outcomes
        status = {r.run_id: r.status for r in instance.get_runs()}
        assert status[backfill.run_id] == dg.DagsterRunStatus.FAILURE
        assert status[job_run.run_id] == dg.DagsterRunStatus.FAILURE
        assert status[observation.run_id] == started  # not an extraction: left alone
        (message,) = [o for o in outcomes if backfill.run_id in o]
        assert "stalled in partition p1 (not reached: p2): no event for " in message
        assert "committed 0 of 2 partitions; last progress (105 s earlier): " in message
        assert message.endswith(
            f"{PROGRESS_PREFIX} 0/2 partitions | loading metrics/m; no live worker process"
        )
