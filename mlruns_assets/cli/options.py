"""Options shared by the subcommands, each with the default and the help of the settings model
(``runtime.settings.Settings``), and the conversion of parsed options into settings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from mlruns_assets.runtime.settings import Kind, Settings, parse_kinds

F = TypeVar("F", bound=Callable[..., Any])


def kind_pairs(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, Kind]:
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, kind = value.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{value!r} is not NAME=KIND (e.g. 'Pupil=generic')")
        pairs[name.strip()] = kind  # bounded: one per --kind option
    try:
        return parse_kinds(pairs)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def setting_option(name: str, *decls: str, **kwargs: Any) -> Callable[[F], F]:
    """An option whose default and help come from the settings model."""
    default = kwargs.pop("default", Settings.default(name))
    if default is not None:  # click >= 8.2 takes an explicit None as a given default
        kwargs["default"] = default
    return click.option(
        *decls,
        show_default=kwargs.pop("show_default", default not in (None, (), {}, False)),
        help=kwargs.pop("help", Settings.help(name)),
        **kwargs,
    )


warehouse_options = [
    setting_option("warehouse", "--warehouse", metavar="URL"),
    setting_option("duckdb_extensions", "--duckdb-extensions", metavar="FOLDER"),
]


def with_warehouse(func: F) -> F:
    """``--warehouse`` and ``--duckdb-extensions``."""
    for decorator in reversed(warehouse_options):
        func = decorator(func)
    return func


kind_option = setting_option(
    "kinds",
    "--kind",
    "kinds",
    multiple=True,
    metavar="NAME=KIND",
    callback=kind_pairs,
    default=(),
    help="an experiment's kind: " + ", ".join(k.value for k in Kind) + " (repeatable; "
    "default: inferred from the experiment's runs and name)",
)
dagster_home_option = click.option(
    "--dagster-home",
    type=click.Path(file_okay=False, path_type=Path),
    help="the persistent Dagster instance [default: .dagster/<database file name>/ beside "
    "the database]",
)


def store_options(func: F) -> F:
    """Where runs come from and where tables go, and how runs are extracted."""
    decorators = [
        setting_option("tracking_uri", "--tracking-uri", required=True, metavar="URI"),
        setting_option("database", "--db", "database", metavar="PATH"),
        *warehouse_options,
        setting_option("experiments", "--experiment", "experiments", multiple=True, metavar="NAME"),
        kind_option,
        setting_option("admit_failed_runs", "--admit-failed-runs", is_flag=True),
        setting_option("subject_map", "--subject-map", metavar="FILE"),
        setting_option(
            "max_memory_gb", "--max-memory-gb", type=click.FloatRange(min=0, min_open=True)
        ),
        setting_option("workers", "--workers", type=click.IntRange(min=1)),
        setting_option(
            "partitions_per_run", "--partitions-per-run", type=click.IntRange(min=1), metavar="N"
        ),
        setting_option("heartbeat_seconds", "--heartbeat-seconds", type=click.FloatRange(min=0)),
        setting_option(
            "hold_connection_seconds", "--hold-connection-seconds", type=click.FloatRange(min=0)
        ),
        setting_option(
            "compact_every_partitions", "--compact-every-partitions", type=click.IntRange(min=0)
        ),
        dagster_home_option,
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def settings_from(options: Mapping[str, Any]) -> Settings:
    """The settings named by the parsed options; the rest keep their defaults."""
    fields = {
        name: value
        for name, value in options.items()
        if name in Settings.__dataclass_fields__ and value is not None
    }
    fields["database"] = database_option(fields.get("database"), fields.get("warehouse"))
    if fields.get("subject_map"):
        fields["subject_map"] = str(Path(fields["subject_map"]).expanduser().resolve())
    fields["experiments"] = tuple(fields.get("experiments", ()))
    try:
        return Settings(**fields)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def database_option(database: str | None, warehouse: str | None) -> str:
    """``--db``, required unless ``--warehouse`` names the warehouse (then "": its default)."""
    if warehouse and database and not warehouse.startswith("ducklake:"):
        raise click.UsageError("give --db or --warehouse duckdb:PATH, not both")
    if not database and not warehouse:
        raise click.UsageError("Missing option '--db' (or '--warehouse')")
    return str(Path(database).expanduser()) if database else ""
