"""Every table this project writes, declared once.

The writer (``warehouse.duckdb_writer``) creates tables from these declarations, the checks
(``warehouse.validation``) compare the database against them, and the README's table reference
is generated from them. Every table carries a
``run_id`` column: it is the partition key and the unit of replacement.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa

UTC_TS = pa.timestamp("us", tz="UTC")
STRING_MAP = pa.map_(pa.string(), pa.string())


@dataclass(frozen=True)
class TableSpec:
    """A table: its name (the asset key's last part), Arrow schema and description."""

    name: str
    schema: pa.Schema
    description: str

    @property
    def column_names(self) -> list[str]:
        return list(self.schema.names)


# What a partition commit takes for one table: the whole Arrow table, or its chunks in order.
TableData = pa.Table | Iterable[pa.Table]


def _f(name: str, type_: pa.DataType, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable)


RUNS = TableSpec(
    "runs",
    pa.schema(
        [
            _f("run_id", pa.string(), False),
            _f("run_name", pa.string()),
            _f("experiment_id", pa.string(), False),
            _f("status", pa.string(), False),
            _f("start_time", UTC_TS),
            _f("end_time", UTC_TS),
            _f("artifact_uri", pa.string()),
            _f("params", STRING_MAP),
            _f("tags", STRING_MAP),
            _f("extracted_at", UTC_TS, False),
        ]
    ),
    "One row per MLflow run: identity, status, timing, params and tags.",
)

METRIC_HISTORY = TableSpec(
    "metric_history",
    pa.schema(
        [
            _f("run_id", pa.string(), False),
            _f("key", pa.string(), False),
            _f("step", pa.int64(), False),
            _f("timestamp", UTC_TS, False),
            _f("value", pa.float64(), False),
        ]
    ),
    "Every logged point of every metric of a run (long format), not only the last value.",
)


def duckdb_type(type_: pa.DataType) -> str:
    """The DuckDB column type for an Arrow type used in these declarations."""
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return "VARCHAR"
    if pa.types.is_int64(type_):
        return "BIGINT"
    if pa.types.is_int32(type_):
        return "INTEGER"
    if pa.types.is_float64(type_):
        return "DOUBLE"
    if pa.types.is_boolean(type_):
        return "BOOLEAN"
    if pa.types.is_timestamp(type_):
        return "TIMESTAMP WITH TIME ZONE" if type_.tz else "TIMESTAMP"
    if pa.types.is_map(type_):
        return f"MAP({duckdb_type(type_.key_type)}, {duckdb_type(type_.item_type)})"
    if pa.types.is_fixed_size_list(type_):
        return f"{duckdb_type(type_.value_type)}[{type_.list_size}]"
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return f"{duckdb_type(type_.value_type)}[]"
    raise TypeError(f"no DuckDB type declared for Arrow type {type_}")


def create_table_sql(schema_name: str, spec: TableSpec) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for a declared table (identifiers quoted)."""
    cols = ",\n  ".join(
        f'"{f.name}" {duckdb_type(f.type)}{"" if f.nullable else " NOT NULL"}' for f in spec.schema
    )
    return f'CREATE TABLE IF NOT EXISTS "{schema_name}"."{spec.name}" (\n  {cols}\n)'


def markdown_reference(specs: list[TableSpec]) -> str:
    """The README's table reference, generated from the declarations."""
    lines: list[str] = []  # bounded: a few lines per declared table
    for spec in specs:
        lines += [f"#### `{spec.name}`", "", spec.description, ""]
        cols = ", ".join(
            f"`{f.name}` {duckdb_type(f.type)}{'' if f.nullable else ' NOT NULL'}"
            for f in spec.schema
        )
        lines += [cols, ""]
    return "\n".join(lines).rstrip() + "\n"
