"""The settings model: defaults and help in one place, a lossless environment round trip, kinds
validated against the registry's enum."""

from __future__ import annotations

import pytest

from mlruns_assets.runtime.settings import (
    ENV_PREFIX,
    Kind,
    Settings,
    admitted_statuses,
    env_name,
    infer_kind,
    parse_kinds,
)


def test_every_option_has_help_and_the_required_ones_no_default() -> None:
    for name in Settings.__dataclass_fields__:
        assert len(Settings.help(name)) > 10, name
    assert Settings.default("tracking_uri") is None and Settings.default("database") is None
    assert Settings.default("max_memory_gb") == 4.0
    assert Settings.default("kinds") == {}


def test_environment_round_trip_keeps_every_field() -> None:
    settings = Settings(
        tracking_uri="sqlite:////data/mlflow.db",
        database="/r/results.duckdb",
        experiments=("A, with comma", "b=c"),
        kinds={"A, with comma": Kind.IMPUTATION},
        admit_failed_runs=True,
        subject_map="/p/map.csv",
        max_memory_gb=1.5,
        stall_sensor_interval_seconds=7,
        demo_subjects=("PLR0001", "G003"),
        private_dir="/p",
        pause_figures=True,
        partitions_per_run=7,
    )
    env = settings.to_env()
    assert env[env_name("database")] == "/r/results.duckdb"
    assert all(key.startswith(ENV_PREFIX) for key in env)
    assert Settings.from_env(env) == settings


def test_malformed_environment_values_name_the_variable() -> None:
    base = {env_name("tracking_uri"): "t", env_name("database"): "d"}
    with pytest.raises(ValueError, match=f"{ENV_PREFIX}MAX_MEMORY_GB='lots'"):
        Settings.from_env({**base, env_name("max_memory_gb"): "lots"})
    with pytest.raises(ValueError, match="choose generic, classification, imputation"):
        Settings.from_env({**base, env_name("kinds"): '{"A": "clasification"}'})
    with pytest.raises(ValueError, match=f"{ENV_PREFIX}PARTITIONS_PER_RUN='0': must be at least 1"):
        Settings.from_env({**base, env_name("partitions_per_run"): "0"})


def test_kinds_inferred_from_names_unless_configured() -> None:
    assert infer_kind("Classification v2") is Kind.CLASSIFICATION
    assert infer_kind("pupil imputation") is Kind.IMPUTATION
    assert infer_kind("Featurization") is Kind.GENERIC
    settings = Settings("t", "d", kinds=parse_kinds({"Featurization": "Imputation "}))
    assert settings.kind_of("Featurization") is Kind.IMPUTATION
    assert settings.kind_of("Classification") is Kind.CLASSIFICATION


def test_admitted_statuses() -> None:
    assert admitted_statuses(False) == ("FINISHED",)
    assert set(admitted_statuses(True)) == {"FINISHED", "FAILED", "KILLED"}
    assert Settings("t", "d", admit_failed_runs=True).admitted_statuses == admitted_statuses(True)
