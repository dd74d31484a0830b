"""The one settings model: every option of the project, its default and its help, read from the
command line (``cli``) or from the environment (the code location that ``dagster dev`` and the
daemon load). Resources are built from it (``defs.resources``); logic never reads
``os.environ``.

Also the project's fixed policies that more than one layer applies: experiment kinds, which runs
are synthetic, which run statuses are admitted, and what an original subject code looks like.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from mlruns_assets.runtime.warehouse_url import WarehouseUrl, parse_warehouse

ENV_PREFIX = "MLRUNS_ASSETS_"
# Synthetic runs never reach a results database: marked by a run-name prefix, an experiment-name
# prefix or a truthy tag.
SYNTHETIC_NAME_PREFIX = "__SYNTHETIC_"
SYNTHETIC_EXPERIMENT_PREFIX = "synth_"
SYNTHETIC_TAG = "is_synthetic"
SYNTHETIC_TAG_VALUES = ("true", "1", "yes")
# Original subject codes of the study (private): PLR and four digits.
ORIGINAL_CODE_PATTERN = r"^PLR\d{4}$"


class Kind(StrEnum):
    """What an experiment's runs carry, and so which tables they fill (``warehouse.catalog``)."""

    GENERIC = "generic"
    CLASSIFICATION = "classification"
    IMPUTATION = "imputation"


def infer_kind(experiment_name: str) -> Kind:
    """The experiment kind from its name, unless configured: which tables its runs carry."""
    lowered = experiment_name.lower()
    if "classif" in lowered:
        return Kind.CLASSIFICATION
    if "imput" in lowered:
        return Kind.IMPUTATION
    return Kind.GENERIC


def admitted_statuses(admit_failed_runs: bool) -> tuple[str, ...]:
    """MLflow run statuses that become partitions."""
    return ("FINISHED", "FAILED", "KILLED") if admit_failed_runs else ("FINISHED",)


# Below this many partitions a step extracts in its own thread: workers are ready ~0.3 s after
# they are asked for, which a short step does not win back.
MIN_PARTITIONS_FOR_WORKERS = 64


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the platform tells)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _option(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    """Where runs come from, where tables go, which experiments to extract, and how."""

    tracking_uri: str = field(
        metadata={
            "help": "the MLflow tracking store: an mlruns folder, sqlite:///... or http(s)://"
        }
    )
    database: str = field(
        metadata={
            "help": "the DuckDB results database (created if missing); with a DuckLake "
            "--warehouse, where the Dagster home and the private folder go (default: its data "
            "folder)"
        }
    )
    experiments: tuple[str, ...] = _option((), "experiment names (default: every one with runs)")
    kinds: Mapping[str, Kind] = field(
        default_factory=dict,
        metadata={"help": "experiment name -> kind (default: inferred from the name)"},
    )
    admit_failed_runs: bool = _option(False, "also extract FAILED and KILLED runs")
    subject_map: str | None = _option(
        None,
        "private CSV (original,anonymized) or YAML map of subject codes: every code written "
        "passes through it and an unmapped code fails its partition",
    )
    max_memory_gb: float = _option(
        4.0, "RSS limit of an extraction step (of each worker process); past it the partition fails"
    )
    workers: int = _option(
        available_cores(),
        "processes reading and transforming runs while the step commits them in order; 1 "
        f"reads in the step itself (so does a step of under {MIN_PARTITIONS_FOR_WORKERS} "
        "partitions, and an imputation experiment, whose signals stream into the database)",
    )
    partitions_per_run: int = _option(
        200,
        "partitions one Dagster run covers (a backfill's runs, the discovery sensor's requests, "
        "the steps of extract), each still committed and recorded on its own: bigger ranges pay "
        "a run's start-up (5-9 s) less often, smaller ones spread a backfill over more runs",
    )
    heartbeat_seconds: float = _option(
        60.0, "longest interval between two progress lines of a working step"
    )
    min_free_disk_gb: float = _option(
        5.0, "refuse to start with less free disk where the database lives"
    )
    hold_connection_seconds: float = _option(
        5.0,
        "keep the write connection across partitions this long before letting other writers in "
        "(each partition is still its own transaction)",
    )
    lock_timeout_seconds: float = _option(
        300.0, "how long to wait for another process's lock on the database file"
    )
    stall_timeout_seconds: float = _option(
        90.0,
        "fail an extraction run silent this long (hung); keep it well above heartbeat_seconds",
    )
    stall_sensor_interval_seconds: int = _option(
        30, "how often the stall sensor looks (the daemon looks at most every 5 s)"
    )
    demo_subjects: tuple[str, ...] = _option(
        (), "subjects (original or anonymized codes) whose traces go to the private folder"
    )
    private_dir: str | None = _option(
        None, "private output folder (default: private/ beside the database)"
    )
    pause_figures: bool = _option(
        False,
        "start the figures sensor stopped: the UI's daemon then leaves leaderboards and curves "
        "as they are after extractions (e.g. while benchmarking); they still materialize by hand",
    )
    warehouse: str | None = _option(
        None,
        "where the tables go: duckdb:PATH (one DuckDB file; the default, from --db) or "
        "ducklake:postgres:<libpq connection string>?data_path=<folder or s3://bucket/prefix> "
        "(a DuckLake catalog several processes can write at once)",
    )
    duckdb_extensions: str | None = _option(
        None,
        "DuckLake: a folder holding DuckDB extension files (tried after the ducklake extra's "
        "wheels, before DuckDB's online repository)",
    )
    compact_every_partitions: int = _option(
        500,
        "DuckLake: merge small data files after every this many partition commits to the "
        "warehouse, by any writer (0: never)",
    )

    def __post_init__(self) -> None:
        # One meaning for every reader: a DuckDB file is `database` (warehouse None); a DuckLake
        # warehouse keeps its URL, and `database` defaults to its local anchor.
        if self.warehouse is None:
            return
        url = parse_warehouse(self.warehouse)
        if not url.is_ducklake:
            object.__setattr__(self, "database", url.path)
            object.__setattr__(self, "warehouse", None)
        elif not self.database:
            object.__setattr__(self, "database", str(url.anchor))

    @property
    def warehouse_url(self) -> WarehouseUrl:
        """The parsed warehouse: the DuckLake catalog, or the DuckDB file ``database``."""
        return parse_warehouse(self.warehouse or f"duckdb:{self.database}")

    @property
    def private_folder(self) -> str:
        """Where private outputs go: never inside the results database."""
        return self.private_dir or str(
            Path(self.database).expanduser().resolve().parent / "private"
        )

    @property
    def admitted_statuses(self) -> tuple[str, ...]:
        return admitted_statuses(self.admit_failed_runs)

    def kind_of(self, experiment_name: str) -> Kind:
        """The configured kind of an experiment, else the one its name suggests."""
        return self.kinds.get(experiment_name) or infer_kind(experiment_name)

    def to_env(self) -> dict[str, str]:
        """Environment for a ``dagster`` process that must build the same definitions."""
        env: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None or value == () or value == {} or value is False:
                continue
            if isinstance(value, tuple | Mapping):
                # JSON: experiment names may contain commas and "=".
                text = json.dumps(list(value) if isinstance(value, tuple) else dict(value))
            else:
                text = "1" if value is True else str(value)
            env[env_name(f.name)] = text  # bounded: one per settings field
        return env

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings | None:
        """The settings in ``environ``; None when neither tracking store nor database is set.

        Raises ValueError with a one-line message for a malformed value."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(env_name(f.name), "").strip()
            if raw:
                values[f.name] = _parse(f.name, raw)  # bounded: one per settings field
        if not values.keys() & {"tracking_uri", "database", "warehouse"}:
            return None
        if "database" not in values and "warehouse" in values:
            values["database"] = ""  # the warehouse's anchor (__post_init__)
        for required in ("tracking_uri", "database"):
            if required not in values:
                raise ValueError(f"{env_name(required)} is not set")
        try:
            return cls(**values)
        except ValueError as exc:
            raise ValueError(f"{env_name('warehouse')}: {exc}") from None

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of one option (the command line shows it in its help); None for the
        required ones."""
        f = {f.name: f for f in dataclasses.fields(cls)}[name]
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return None if f.default is dataclasses.MISSING else f.default

    @classmethod
    def help(cls, name: str) -> str:
        return str({f.name: f for f in dataclasses.fields(cls)}[name].metadata["help"])


def env_name(option: str) -> str:
    """``max_memory_gb`` -> ``MLRUNS_ASSETS_MAX_MEMORY_GB`` (``database`` -> ``..._DB``)."""
    return ENV_PREFIX + ("DB" if option == "database" else option.upper())


def _names(value: str) -> tuple[str, ...]:
    """Names: a JSON list (what ``to_env`` writes) or, by hand, ``A,B``."""
    if value.startswith("["):
        return tuple(str(name) for name in json.loads(value))
    return tuple(name.strip() for name in value.split(",") if name.strip())


def parse_kinds(pairs: Mapping[str, str]) -> dict[str, Kind]:
    """Experiment name -> kind, each kind one of ``Kind`` (ValueError naming the choices)."""
    out: dict[str, Kind] = {}
    for name, kind in pairs.items():
        try:
            out[name] = Kind(kind.strip().lower())  # bounded: one per configured experiment
        except ValueError:
            choices = ", ".join(k.value for k in Kind)
            raise ValueError(f"unknown kind {kind!r} for {name!r} (choose {choices})") from None
    return out


def _kinds(value: str) -> dict[str, Kind]:
    """A JSON object (what ``to_env`` writes) or, by hand, ``Name=kind,Other=kind``."""
    if value.startswith("{"):
        return parse_kinds({str(k): str(v) for k, v in json.loads(value).items()})
    pairs = (item.split("=", 1) for item in value.split(",") if "=" in item)
    return parse_kinds({name.strip(): kind.strip() for name, kind in pairs})


# Counts that make no sense below one (the command line refuses them the same way).
_AT_LEAST_ONE = ("workers", "partitions_per_run")


def _parse(name: str, raw: str) -> Any:
    kind: type = str if name in ("tracking_uri", "database") else type(Settings.default(name))
    try:
        if name == "kinds":
            return _kinds(raw)
        if name == "experiments":
            return _names(raw)
        if name == "demo_subjects":
            return _names(raw)
        if kind is bool:
            return raw.lower() not in ("", "0", "false", "no")
        if kind in (int, float):
            value = kind(raw)
            if name in _AT_LEAST_ONE and value < 1:
                raise ValueError("must be at least 1")
            return value
        return raw
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"{env_name(name)}={raw!r}: {exc}") from None
