"""Micro-benchmark of the DuckDB commit pattern alone: what one partition's commit costs.

One real run of the store is extracted once (``extract_run``); its tables are then committed N
times under fresh run ids through ``mlruns_assets.warehouse.duckdb_writer.replace_partition``
with the same in-transaction validation as the extraction asset, in four patterns:

  one_connection      one connection for all partitions (the floor's pattern)
  partition_writer    the project's ``PartitionWriter`` with its default hold time (what
                      ``extract`` and the backfill workers do)
  per_partition       open / commit / close per partition through ``connect_with_retry``,
                      i.e. with the project's ``STORAGE_SETTINGS`` (a hold time of 0)
  per_partition_vacuum  the same, but with DuckDB's default checkpoint vacuum
                      (``max_vacuum_tasks`` = 100) instead of the project's setting

For each: ms per partition, database file size, and the peak RSS added by one full-table
``GROUP BY run_id`` (what the table checks at the end of a run do on every table).

    python benchmarks/commit_patterns.py --tracking-uri URI --experiment NAME --workdir DIR
        [--partitions 100]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from mlruns_assets import warehouse
from mlruns_assets.pipeline.partition_loop import reject_invalid_run
from mlruns_assets.pipeline.run_extraction import ExtractionSettings, extract_run
from mlruns_assets.runtime.guardrails import current_rss, peak_rss, reset_peak_rss
from mlruns_assets.runtime.settings import Kind
from mlruns_assets.source.tracking import TrackingStore
from mlruns_assets.warehouse.duckdb_writer import (
    DuckDBWarehouse,
    connect_with_retry,
    replace_partition,
)
from mlruns_assets.warehouse.tables import TableSpec

PATTERNS = ("one_connection", "partition_writer", "per_partition", "per_partition_vacuum")


def _with_run_id(tables: dict[TableSpec, pa.Table], run_id: str) -> dict[TableSpec, pa.Table]:
    out = {}
    for spec, table in tables.items():
        column = pa.array([run_id] * table.num_rows, pa.string())
        out[spec] = table.set_column(table.schema.get_field_index("run_id"), "run_id", column)
    return out


def _scan_peak(db: Path, schema: str, table: str) -> float:
    """MB of RSS added by one GROUP BY over a whole table, on a fresh read-only connection."""
    with duckdb.connect(str(db), read_only=True) as conn:
        reset_peak_rss()
        before = current_rss()
        conn.execute(
            f'SELECT run_id, count(*) FROM "{schema}"."{table}" GROUP BY run_id'
        ).fetchall()
        return (peak_rss() - before) / 1e6


def run_pattern(
    pattern: str, tables: dict[TableSpec, pa.Table], schema: str, db: Path, partitions: int
) -> dict[str, Any]:
    specs = list(tables)
    for suffix in ("", ".wal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    config = {"max_vacuum_tasks": 100} if pattern == "per_partition_vacuum" else None
    with ExitStack() as stack:
        shared = (
            stack.enter_context(connect_with_retry(str(db)))
            if pattern == "one_connection"
            else None
        )
        writer = (
            stack.enter_context(DuckDBWarehouse(database=str(db)).partition_writer())
            if pattern == "partition_writer"
            else None
        )
        started = time.perf_counter()
        for i in range(partitions):
            run_id = f"{i:032x}"
            data = _with_run_id(tables, run_id)
            check = partial(reject_invalid_run, schema, specs, run_id)
            if writer is not None:
                writer.commit(schema, run_id, data, check)
            elif shared is not None:
                replace_partition(shared, schema, run_id, data, check)
            else:
                with connect_with_retry(str(db), config=config) as conn:
                    replace_partition(conn, schema, run_id, data, check)
    seconds = time.perf_counter() - started
    return {
        "ms_per_partition": 1000 * seconds / partitions,
        "db_mb": db.stat().st_size / 1e6,
        "full_scan_peak_mb": _scan_peak(db, schema, "dca_curves"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--partitions", type=int, default=100)
    args = parser.parse_args(argv)
    store = TrackingStore(args.tracking_uri)
    (experiment,) = store.experiments([args.experiment])
    run = next(store.iter_runs(experiment.experiment_id))
    tables = extract_run(store, run, ExtractionSettings(kind=Kind.CLASSIFICATION)).tables
    materialized = {spec: t for spec, t in tables.items() if isinstance(t, pa.Table)}
    args.workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "partitions": args.partitions,
        "project_storage_settings": getattr(warehouse, "STORAGE_SETTINGS", {}),
        "rows_per_partition": sum(t.num_rows for t in materialized.values()),
    }
    for pattern in PATTERNS:
        db = args.workdir / f"{pattern}.duckdb"
        result[pattern] = run_pattern(pattern, materialized, experiment.slug, db, args.partitions)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
