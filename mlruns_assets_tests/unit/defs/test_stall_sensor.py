"""The stall sensor's decisions as plain functions, and the one sensor per code location."""

from __future__ import annotations

import dagster as dg

from mlruns_assets.defs.project import build_definitions
from mlruns_assets.defs.stall_sensor import (
    SENSOR_NAME,
    WatchedRun,
    find_stalled_runs,
    pending_partitions,
    run_partition_keys,
    stall_message,
)
from mlruns_assets.runtime.settings import ENV_PREFIX, Settings
from mlruns_assets.source.tracking import ExperimentRef


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
        stall_timeout_seconds=42,
        stall_sensor_interval_seconds=7,
    ).to_env()
    assert env[f"{ENV_PREFIX}STALL_TIMEOUT_SECONDS"] == "42"
    config = Settings.from_env(env)
    assert config is not None
    experiments = [ExperimentRef("1", "Classification"), ExperimentRef("2", "Imputation")]
    defs = build_definitions(config, experiments)
    stall = [s for s in defs.sensors or [] if s.name == SENSOR_NAME]
    assert len(stall) == 1
    (sensor,) = stall
    assert isinstance(sensor, dg.SensorDefinition)
    assert sensor.minimum_interval_seconds == 7
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert "logged nothing for 42 s" in (sensor.description or "")
