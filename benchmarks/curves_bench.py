"""Curves benchmark (issue 14): what drawing a run's four pictures costs next to extracting it.

    uv run python benchmarks/curves_bench.py --runs 50 --bootstraps 1000 \
        --out benchmarks/results/curves.json

One seed-shaped classification store (``store.py``), measured side by side in this process:
  extract     ``mlruns-assets extract`` (in process): wall time per partition, and each
              partition's own ``duration_s`` (read, build, commit with validation) from its
              materialization
  render      per run: read its curve data from DuckDB (read-only connection opened and closed)
              and draw the four PNGs (Agg), timed separately; the Markdown's size
  curves job  the ``stratos_curves`` asset as Dagster runs it (``render_stale_curves``: ranges
              of 50, one materialization per partition): wall time per partition
  leaderboard ``refresh_leaderboards`` (one Dagster run) and ``write_leaderboard`` alone
The budget the issue sets: drawing inside the extraction would add render / partition time; it
must stay under 15 % or be done elsewhere (here: the separate, lazily automated asset).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from store import write_benchmark_store

from mlruns_assets.cli.extract import run_extract
from mlruns_assets.cli.figures_refresh import refresh_leaderboards, render_stale_curves
from mlruns_assets.defs.project import build_definitions
from mlruns_assets.figures.curve_data import CURVES, read_run_curves
from mlruns_assets.figures.markdown import image_markdown
from mlruns_assets.figures.plots import render_curves
from mlruns_assets.runtime.instance import open_instance
from mlruns_assets.runtime.settings import Settings
from mlruns_assets.source.tracking import TrackingStore
from mlruns_assets.warehouse.leaderboard import write_leaderboard

SCHEMA = "classification"
BUDGET = 0.15


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(1000 * statistics.median(ordered), 1),
        "p90_ms": round(1000 * ordered[int(0.9 * (len(ordered) - 1))], 1),
        "mean_ms": round(1000 * statistics.fmean(ordered), 1),
    }


def _partition_seconds(instance: dg.DagsterInstance) -> list[float]:
    records = instance.fetch_materializations(dg.AssetKey([SCHEMA, "stratos"]), limit=10_000)
    return [
        float(r.asset_materialization.metadata["duration_s"].value)  # type: ignore[union-attr]
        for r in records.records
        if r.asset_materialization is not None
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--bootstraps", type=int, default=1000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/curves.json"))
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="curves_bench_"))
    report: dict[str, Any] = {
        "runs": args.runs,
        "bootstraps": args.bootstraps,
        "cpus": os.cpu_count(),
        "loadavg_start": _load(),
    }
    started = time.perf_counter()
    store = write_benchmark_store(work / "store", args.runs, args.bootstraps)
    report["store_s"] = round(time.perf_counter() - started, 1)
    db, home = work / "results.duckdb", work / "home"
    settings = Settings(
        tracking_uri=store.tracking_uri, database=str(db), subject_map=str(store.subject_map)
    )

    started = time.perf_counter()
    summary = run_extract(settings, home, write=lambda _: None)
    extract_s = time.perf_counter() - started
    assert not summary.failed, summary.failed
    with open_instance(home) as instance:
        partitions = _partition_seconds(instance)
    report["extract"] = {
        "wall_s": round(extract_s, 2),
        "wall_per_partition_ms": round(1000 * extract_s / args.runs, 1),
        "partition_duration": _summary(partitions),
    }

    reads, renders, sizes = [], [], []  # bounded: one figure per run
    for run_id in store.run_ids:
        t0 = time.perf_counter()
        with duckdb.connect(str(db), read_only=True) as conn:
            curves = read_run_curves(conn, SCHEMA, run_id)
        t1 = time.perf_counter()
        assert curves is not None
        pngs = render_curves(curves)
        t2 = time.perf_counter()
        reads.append(t1 - t0)
        renders.append(t2 - t1)
        sizes.append(sum(len(image_markdown(title, pngs[n])) for n, title in CURVES))
    report["render"] = {
        "read": _summary(reads),
        "draw": _summary(renders),
        "metadata_kb_max": round(max(sizes) / 1000, 1),
    }

    experiments = TrackingStore(store.tracking_uri).experiments(None)
    defs = build_definitions(settings, experiments)
    with open_instance(home) as instance:
        started = time.perf_counter()
        done = render_stale_curves(defs, instance, experiments)
        curves_s = time.perf_counter() - started
        started = time.perf_counter()
        refresh_leaderboards(defs, instance, experiments)
        leaderboard_job_s = time.perf_counter() - started
    assert done.curves == args.runs and not done.failures, done
    with duckdb.connect(str(db)) as conn:
        started = time.perf_counter()
        write_leaderboard(conn, SCHEMA)
        leaderboard_s = time.perf_counter() - started
    report["curves_job"] = {
        "wall_s": round(curves_s, 2),
        "wall_per_partition_ms": round(1000 * curves_s / args.runs, 1),
    }
    report["leaderboard"] = {
        "dagster_run_s": round(leaderboard_job_s, 2),
        "write_leaderboard_ms": round(1000 * leaderboard_s, 1),
    }
    partition_ms = report["extract"]["partition_duration"]["median_ms"]
    render_ms = report["render"]["read"]["median_ms"] + report["render"]["draw"]["median_ms"]
    report["ratio"] = {
        "render_over_partition_duration": round(render_ms / partition_ms, 2),
        "render_over_extract_wall_per_partition": round(
            render_ms / report["extract"]["wall_per_partition_ms"], 2
        ),
        "budget": BUDGET,
        "inside_extraction_would_meet_budget": render_ms / partition_ms <= BUDGET,
    }
    report["loadavg_end"] = _load()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
