"""Micro-measurements of issue 13's levers, side by side in one process on the same store.

    python benchmarks/levers.py --tracking-uri URI --experiment NAME --db COMPLETE.duckdb
        --workdir DIR [--runs 100] [--repeats 40]

Each pair alternates its two ways over the same runs (A, B, A, B, ...) so that a change of load
on the shared machine hits both alike; each figure is the median per run (or per partition).
  metric histories  ``TrackingStore.metric_histories`` (windows of 16 runs, as the workers read
                    them) vs ``TrackingStore.metric_history`` (one query per run and key)
  artifact listing  ``RunArtifacts.list`` (the run's artifact URI) vs
                    ``client.list_artifacts(run_id, folder)`` (resolves ``runs:/`` first)
  validation        one ``run_failures_sql`` query vs the detailed ``run_checks`` (14 queries),
                    on runs committed in ``--db`` (a complete database, opened read-only)
  table creation    one partition's ``replace_partition`` (delete + Arrow insert + commit) on a
                    scratch copy of one run's rows, with ``ensure_tables`` (CREATE TABLE IF NOT
                    EXISTS x 11) before it vs with the tables known on the connection
  checkpoint read   (with ``--dagster-home``, the instance that extracted ``--db``) what every
                    partition's latest materialization recorded: the latest storage id per
                    partition, then those events (``defs.checkpoints.recorded_partitions``) vs
                    every materialization event of the asset, newest first (the earlier way)
  assets            one Dagster run over ``--asset-partitions`` partitions of a multi-asset of
                    one asset vs of two (the extraction's ``runs`` and ``stratos``), on this
                    project's instance storage in a scratch home; the step does nothing but
                    yield each partition's materializations, so the difference is what a second
                    asset per experiment costs a partition in events (planned + materialized)
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from mlruns_assets.defs.checkpoints import recorded_partitions
from mlruns_assets.defs.partitions import range_tags
from mlruns_assets.runtime.guardrails import MemoryGuard
from mlruns_assets.runtime.instance import open_instance
from mlruns_assets.runtime.settings import Kind, Settings
from mlruns_assets.source.artifacts import METRICS_FOLDER, load_metrics_artifact
from mlruns_assets.source.tracking import TrackingStore, exclusion_reason
from mlruns_assets.transform.run_record import metric_history_table, runs_table
from mlruns_assets.transform.stratos_tables import build_stratos_tables
from mlruns_assets.transform.subjects import load_subject_map
from mlruns_assets.warehouse.catalog import tables_for_kind
from mlruns_assets.warehouse.duckdb_writer import (
    connect_with_retry,
    ensure_tables,
    existing_tables,
    replace_partition,
)
from mlruns_assets.warehouse.validation import run_checks, run_failures_sql

WINDOW = 16  # runs per bulk metric-history read, as the extraction pool reads them


def _pair(
    name_a: str,
    a: Callable[[], object],
    name_b: str,
    b: Callable[[], object],
    per: int,
    rounds: int,
) -> dict[str, Any]:
    """Alternate ``a`` and ``b`` for ``rounds`` rounds; medians in ms per unit (``per`` units
    per call)."""
    times: dict[str, list[float]] = {name_a: [], name_b: []}
    for _ in range(rounds):
        for name, fn in ((name_a, a), (name_b, b)):
            t = time.perf_counter()
            fn()
            times[name].append(1000 * (time.perf_counter() - t) / per)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        f"{name_a}_ms": med[name_a],
        f"{name_b}_ms": med[name_b],
        "ratio": med[name_b] / med[name_a] if med[name_a] else None,
        "rounds": rounds,
        "per_call": per,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--db", required=True, help="a complete database (read only)")
    parser.add_argument("--subject-map")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--dagster-home", type=Path, help="the instance that extracted --db")
    parser.add_argument(
        "--asset-partitions",
        type=int,
        default=Settings.__dataclass_fields__["partitions_per_run"].default,
        help="partitions per run of the assets lever (default: the partitions_per_run setting)",
    )
    args = parser.parse_args(argv)
    store = TrackingStore(args.tracking_uri)
    (experiment,) = store.experiments([args.experiment])
    slug, specs = experiment.slug, tables_for_kind(Kind.CLASSIFICATION)
    runs = [
        run
        for run in store.iter_runs(experiment.experiment_id, order_by=["attributes.end_time ASC"])
        if exclusion_reason(run, experiment.name, ("FINISHED",)) is None
    ][: args.runs]
    out: dict[str, Any] = {"runs": len(runs), "store_access": store.access}

    # Metric histories: same runs, same points (checked), one window of 16 runs per call.
    windows = [runs[i : i + WINDOW] for i in range(0, len(runs), WINDOW)]
    bulk = store.metric_histories(windows[0])
    assert bulk is not None, "not an SQL store"
    for run in windows[0]:
        one = store.metric_history(run)
        assert metric_history_table(run.info.run_id, one).equals(
            metric_history_table(run.info.run_id, bulk[run.info.run_id])
        ), "bulk and per-run histories differ"
    state = {"i": 0, "j": 0}

    def bulk_window() -> None:
        store.metric_histories(windows[state["i"] % len(windows)])
        state["i"] += 1

    def per_run_window() -> None:
        for run in windows[state["j"] % len(windows)]:
            store.metric_history(run)
        state["j"] += 1

    out["metric_histories"] = _pair(
        "bulk_16_runs", bulk_window, "per_run", per_run_window, WINDOW, max(len(windows), 12)
    )
    out["metric_histories"]["points_per_run"] = len(
        metric_history_table(runs[0].info.run_id, bulk[runs[0].info.run_id])
    )

    # Artifact listing: a batch of 16 runs per call.
    def list_uri(batch: list[Any]) -> None:
        for run in batch:
            with store.artifacts(run) as artifacts:
                artifacts.list(METRICS_FOLDER)

    def list_client(batch: list[Any]) -> None:
        for run in batch:
            store.client.list_artifacts(run.info.run_id, METRICS_FOLDER)

    k = {"a": 0, "b": 0}

    def uri_next() -> None:
        list_uri(windows[k["a"] % len(windows)])
        k["a"] += 1

    def client_next() -> None:
        list_client(windows[k["b"] % len(windows)])
        k["b"] += 1

    out["artifact_listing"] = _pair(
        "run_artifact_uri", uri_next, "client_list_artifacts", client_next, WINDOW, 12
    )

    # Validation on committed runs of the complete database.
    conn = connect_with_retry(args.db, read_only=True)
    sql = run_failures_sql(slug, specs)
    assert sql is not None
    run_ids = [r.info.run_id for r in runs]
    v = {"a": 0, "b": 0}

    def one_query() -> None:
        found = conn.execute(sql, {"run_id": run_ids[v["a"] % len(run_ids)]}).fetchone()
        assert found is not None and found[0] == 0, "a committed run fails the checks"
        v["a"] += 1

    def detailed() -> None:
        outcomes = run_checks(conn, slug, specs, run_ids[v["b"] % len(run_ids)])
        v["b"] += 1
        out.setdefault("detailed_queries", len(outcomes))

    out["validation"] = _pair("run_failures_sql", one_query, "run_checks", detailed, 1, 60)
    out["validation"]["db_rows_runs"] = int(
        (conn.execute(f'SELECT count(*) FROM "{slug}".runs').fetchone() or [0])[0]
    )
    conn.close()

    # Table creation: one real run's tables committed over and over on a scratch database.
    run = runs[0]
    memory = MemoryGuard(int(8e9))
    subject_map = load_subject_map(args.subject_map) if args.subject_map else None
    now = dt.datetime.now(tz=dt.UTC)
    with store.artifacts(run) as artifacts:
        metrics, path = load_metrics_artifact(artifacts, memory)
    tables = {specs[0]: runs_table(run, now)}
    tables[specs[1]] = metric_history_table(run.info.run_id, store.metric_history(run))
    stratos_tables, _ = build_stratos_tables(run, metrics, path, subject_map, now)
    tables.update(stratos_tables)
    del metrics
    args.workdir.mkdir(parents=True, exist_ok=True)
    scratch = args.workdir / "levers_scratch.duckdb"
    for p in (scratch, Path(f"{scratch}.wal")):
        p.unlink(missing_ok=True)
    wconn = connect_with_retry(str(scratch))
    ensure_tables(wconn, slug, specs)
    present = existing_tables(wconn, slug)

    def with_create() -> None:
        ensure_tables(wconn, slug, specs)
        replace_partition(wconn, slug, run.info.run_id, tables, present=present)

    def without_create() -> None:
        replace_partition(wconn, slug, run.info.run_id, tables, present=present)

    def create_only() -> None:
        ensure_tables(wconn, slug, specs)

    out["create_tables"] = _pair(
        "tables_known", without_create, "create_if_not_exists_x11", with_create, 1, args.repeats
    )
    out["create_tables"]["tables"] = len(specs)
    out["create_tables"]["ensure_tables_alone_ms"] = _pair(
        "ensure_tables", create_only, "ensure_tables_again", create_only, 1, args.repeats
    )["ensure_tables_ms"]
    wconn.close()
    if args.dagster_home:
        out["checkpoint_read"] = _checkpoint_read(args.dagster_home, slug, args.repeats)
    if args.asset_partitions:
        out["assets"] = _assets_per_experiment(args.workdir / "assets_home", args.asset_partitions)
    print(json.dumps(out))
    return 0


def _every_event(instance: Any, asset_key: Any) -> dict[str, Any]:
    """The earlier checkpoint read: every materialization event, newest first."""
    found: dict[str, Any] = {}
    cursor = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key), limit=1000, cursor=cursor
        )
        for record in page.records:
            if record.partition_key not in found:
                found[record.partition_key] = record.asset_materialization.metadata
        if not page.has_more:
            return found
        cursor = page.cursor


def _events_only_asset(names: Sequence[str], partitions: Any) -> dg.AssetsDefinition:
    """A multi-asset like the extraction's, whose step only yields each partition's
    materializations (with metadata of the extraction's size)."""
    key = "_".join(names)

    @dg.multi_asset(
        name=f"events_{key}",
        specs=[dg.AssetSpec([key, n], partitions_def=partitions, skippable=True) for n in names],
        partitions_def=partitions,
        can_subset=False,
    )
    def events(context):  # type: ignore[no-untyped-def]  # (a string annotation Dagster rejects)
        for partition in context.partition_keys:
            for n in names:
                yield dg.AssetMaterialization(
                    asset_key=[key, n],
                    partition=partition,
                    metadata={f"rows/table_{i}": dg.MetadataValue.int(i) for i in range(12)},
                )

    return events


def _assets_per_experiment(home: Path, partitions: int, rounds: int = 6) -> dict[str, Any]:
    """Runs over the same ``partitions`` partitions, one asset vs two, alternating."""
    if home.exists():
        shutil.rmtree(home)
    parts = dg.DynamicPartitionsDefinition(name="runs")
    keys = [f"run{i:05d}" for i in range(partitions)]
    one = _events_only_asset(["run_tables"], parts)
    two = _events_only_asset(["runs", "stratos"], parts)
    tags = range_tags(keys)
    with open_instance(home) as instance:
        instance.add_dynamic_partitions("runs", keys)

        def run(asset: dg.AssetsDefinition) -> Callable[[], None]:
            def go() -> None:
                result = dg.materialize([asset], instance=instance, tags=tags)
                assert result.success
                materialized = result.get_asset_materialization_events()
                assert len(materialized) == partitions * len(asset.keys), "events missing"

            return go

        result = _pair("one_asset", run(one), "two_assets", run(two), partitions, rounds)
    return {**result, "partitions_per_run": partitions}


def _checkpoint_read(home: Path, slug: str, repeats: int) -> dict[str, Any]:
    asset_key = dg.AssetKey([slug, "stratos"])
    with open_instance(home) as instance:
        latest = recorded_partitions(instance, asset_key)
        every = _every_event(instance, asset_key)
        assert set(latest) == set(every), "the two reads see other partitions"
        events = len(instance.fetch_materializations(asset_key, limit=10_000).records)
        result = _pair(
            "latest_by_storage_id",
            lambda: recorded_partitions(instance, asset_key),
            "every_event",
            lambda: _every_event(instance, asset_key),
            1,
            max(repeats // 4, 5),
        )
    return {**result, "partitions": len(latest), "materialization_events": events}


if __name__ == "__main__":
    raise SystemExit(main())
