"""Variant (b) of the benchmark: the project's extraction work without Dagster (the floor).

The same calls ``mlruns_assets.pipeline.run_extraction.extract_run`` makes (run row, metric history,
``load_metrics_artifact`` with the allow-list unpickler, ``build_stratos_tables``), timed one by
one, then one Arrow transaction per run through
``mlruns_assets.warehouse.duckdb_writer.replace_partition`` with the same in-transaction
validation as the extraction asset (``reject_invalid_run``). One DuckDB connection for the whole
loop; no Dagster instance, no events.

``--physical``: the physical floor (issue 13's reference for (c)). Not timed: the run listing,
every run's metric history (one bulk read) and the path of its metrics pickle, and the 11 tables
created. Timed, per run: read the pickle file from disk with the allow-list unpickler
(``load_untrusted_pickle``), build the tables (``runs_table``, ``metric_history_table`` from the
history already read, ``build_stratos_tables``), append each Arrow table into its table and
commit, one transaction per run on one DuckDB connection (no delete, no validation).

    python benchmarks/floor.py --tracking-uri URI --experiment NAME --db PATH
        [--subject-map CSV] [--physical] [--imports-only]

Prints one JSON line: runs, seconds and the time per phase (summed over runs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from functools import partial

import duckdb

from mlruns_assets.pipeline.partition_loop import reject_invalid_run
from mlruns_assets.runtime.guardrails import MemoryGuard
from mlruns_assets.runtime.settings import Kind
from mlruns_assets.source.artifacts import METRICS_FOLDER, load_metrics_artifact
from mlruns_assets.source.safe_pickle import load_untrusted_pickle
from mlruns_assets.source.tracking import TrackingStore, exclusion_reason
from mlruns_assets.transform.run_record import metric_history_table, runs_table
from mlruns_assets.transform.stratos_tables import build_stratos_tables
from mlruns_assets.transform.subjects import load_subject_map
from mlruns_assets.warehouse.catalog import tables_for_kind
from mlruns_assets.warehouse.duckdb_writer import (
    _insert_by_name,
    connect_with_retry,
    ensure_tables,
    replace_partition,
)

PHASES = ("runs_row", "metric_history", "load_artifact", "build_tables", "insert", "validate")
PHYSICAL_PHASES = ("unpickle", "build_tables", "append_commit")


def physical_floor(args: argparse.Namespace) -> int:
    """The physical floor (see the module docstring): prints runs, seconds, phases_s."""
    setup_started = time.perf_counter()
    store = TrackingStore(args.tracking_uri)
    (experiment,) = store.experiments([args.experiment])
    slug, specs = experiment.slug, tables_for_kind(Kind.CLASSIFICATION)
    subject_map = load_subject_map(args.subject_map) if args.subject_map else None
    runs = [
        run
        for run in store.iter_runs(experiment.experiment_id, order_by=["attributes.end_time ASC"])
        if exclusion_reason(run, experiment.name, ("FINISHED",)) is None
    ]
    histories = store.metric_histories(runs)
    if histories is None:
        histories = {run.info.run_id: store.metric_history(run) for run in runs}
    pickles = []  # (artifact path, local file) per run: listed before the clock starts
    for run in runs:
        with store.artifacts(run) as artifacts:
            (path,) = [
                p
                for p, _ in artifacts.list(METRICS_FOLDER)
                if p.rsplit("/", 1)[-1].startswith("metrics_") and p.endswith(".pickle")
            ]
            pickles.append((path, artifacts.local_path(path)))
    conn = connect_with_retry(args.db)
    ensure_tables(conn, slug, specs)
    setup_s = time.perf_counter() - setup_started
    spent = dict.fromkeys(PHYSICAL_PHASES, 0.0)
    started = time.perf_counter()
    try:
        for run, (path, local) in zip(runs, pickles, strict=True):
            t0 = time.perf_counter()
            metrics = load_untrusted_pickle(local, display_name=path)
            t1 = time.perf_counter()
            now = dt.datetime.now(tz=dt.UTC)
            run_id = run.info.run_id
            tables = {
                specs[0]: runs_table(run, now),
                specs[1]: metric_history_table(run_id, histories[run_id]),
            }
            stratos_tables, _ = build_stratos_tables(run, metrics, path, subject_map, now)
            del metrics
            tables.update(stratos_tables)
            t2 = time.perf_counter()
            conn.begin()
            for spec, table in tables.items():
                if table.num_rows:
                    _insert_by_name(conn, f'"{slug}"."{spec.name}"', table)
            conn.commit()
            del tables, stratos_tables
            t3 = time.perf_counter()
            spent["unpickle"] += t1 - t0
            spent["build_tables"] += t2 - t1
            spent["append_commit"] += t3 - t2
    finally:
        conn.close()
    seconds = time.perf_counter() - started
    out = {
        "runs": len(runs),
        "seconds": seconds,
        "setup_s": setup_s,
        "tables": len(specs),
        "phases_s": spent,
    }
    print(json.dumps(out))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--subject-map")
    parser.add_argument("--max-memory-gb", type=float, default=4.0)
    parser.add_argument(
        "--physical", action="store_true", help="the physical floor (see the docstring)"
    )
    parser.add_argument("--imports-only", action="store_true", help="import, then exit")
    args = parser.parse_args(argv)
    if args.imports_only:
        return 0
    if args.physical:
        return physical_floor(args)
    started = time.perf_counter()
    store = TrackingStore(args.tracking_uri)
    (experiment,) = store.experiments([args.experiment])
    slug, specs = experiment.slug, tables_for_kind(Kind.CLASSIFICATION)
    subject_map = load_subject_map(args.subject_map) if args.subject_map else None
    memory = MemoryGuard(int(args.max_memory_gb * 1e9))
    spent = dict.fromkeys(PHASES, 0.0)
    done = 0
    conn = connect_with_retry(args.db)

    def timed_validate(run_id: str) -> Callable[[duckdb.DuckDBPyConnection], None]:
        check = partial(reject_invalid_run, slug, specs, run_id)

        def validate(c: duckdb.DuckDBPyConnection) -> None:
            t = time.perf_counter()
            check(c)
            spent["validate"] += time.perf_counter() - t

        return validate

    try:
        for run in store.iter_runs(experiment.experiment_id, order_by=["attributes.end_time ASC"]):
            if exclusion_reason(run, experiment.name, ("FINISHED",)) is not None:
                continue
            t0 = time.perf_counter()
            now = dt.datetime.now(tz=dt.UTC)
            memory.check(f"the start of run {run.info.run_id}")
            tables = {specs[0]: runs_table(run, now)}
            t1 = time.perf_counter()
            tables[specs[1]] = metric_history_table(run.info.run_id, store.metric_history(run))
            t2 = time.perf_counter()
            with store.artifacts(run) as artifacts:
                metrics, path = load_metrics_artifact(artifacts, memory)
            t3 = time.perf_counter()
            stratos_tables, _ = build_stratos_tables(run, metrics, path, subject_map, now)
            del metrics
            tables.update(stratos_tables)
            t4 = time.perf_counter()
            validated_before = spent["validate"]
            replace_partition(conn, slug, run.info.run_id, tables, timed_validate(run.info.run_id))
            t5 = time.perf_counter()
            spent["runs_row"] += t1 - t0
            spent["metric_history"] += t2 - t1
            spent["load_artifact"] += t3 - t2
            spent["build_tables"] += t4 - t3
            spent["insert"] += (t5 - t4) - (spent["validate"] - validated_before)
            done += 1
    finally:
        conn.close()
    seconds = time.perf_counter() - started
    print(json.dumps({"runs": done, "seconds": seconds, "phases_s": spent}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
