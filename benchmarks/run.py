"""Benchmark harness (issue 6): the same seed-shaped store, extracted five ways in one run.

    uv run python benchmarks/run.py --runs 400 --bootstraps 1000
        --out benchmarks/results/report.json

Variants, each in a fresh child process on a fresh database (peak RSS per variant):
  (a) baseline  benchmarks/baseline_exporter.py: the original exporter's approach (REFERENCE ONLY):
                plain pickle, row-by-row INSERTs in autocommit mode
  (b) floor     benchmarks/floor.py: the project's extraction calls + one Arrow transaction per
                run (replace_partition + in-transaction validation), no Dagster
  (c) extract   ``mlruns-assets extract`` (the CLI) on a fresh database and Dagster home
  (d) backfill  the UI's LaunchPartitionBackfill mutation against dagster-webserver, executed by
                ``dagster-daemon run`` (benchmarks/backfill.py)
  resume        ``mlruns-assets extract`` again on (c)'s complete database, with the store's
                artifact folder renamed away (proves that no artifact is opened)
plus an N sweep of (b) and (c). Peak RSS is reported above an import baseline: the peak of a
child process that imports what the variant imports and exits.

Writes the JSON report to --out, and report.md / report.png beside it. Targets are reported as
ratios, never asserted. The store and databases live in --workdir (default: a temporary folder,
removed at the end).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from measure import MB, ProcessResult, measurement_floor, run_measured
from store import BenchStore, write_benchmark_store, write_subset_store

HERE = Path(__file__).resolve().parent
PY = sys.executable
CLI = str(Path(sys.executable).parent / "mlruns-assets")
SUMMARY = re.compile(r"materialized (\d+), skipped (\d+) .* in ([\d.]+) s")
ESSENTIAL_NUMERIC = (
    "auroc",
    "auroc_ci_lower",
    "auroc_ci_upper",
    "calibration_slope",
    "calibration_intercept",
    "o_e_ratio",
    "brier_score",
    "scaled_brier",
    "net_benefit_5pct",
    "net_benefit_10pct",
    "net_benefit_15pct",
    "net_benefit_20pct",
    "n_test",
    "n_events",
    "prevalence",
)
TARGETS = {
    "c_over_b": 1.3,
    "a_over_c": 2.0,
    "d_over_c": 2.0,
    "rss_over_artifact": 3.0,
    "rss_drift": 0.10,
    "resume_s": 3.0,
}


def code_fingerprint() -> dict[str, Any]:
    """What code was measured: HEAD, files changed since, and a hash of the package's sources
    (compared at the end: other people edit the tree while benchmarks run)."""
    digest = hashlib.sha256()
    files: dict[str, str] = {}
    for path in sorted((HERE.parent / "mlruns_assets").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
        files[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=HERE.parent, capture_output=True, text=True, timeout=30
            )
        except OSError:
            return ""
        return done.stdout.strip()

    return {
        "head": git("rev-parse", "--short", "HEAD"),
        "modified_since_head": git("status", "--porcelain", "--", "mlruns_assets").splitlines(),
        "package_sha256": digest.hexdigest()[:16],
        "files_sha256": files,
    }


def log(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- variants
def _store_args(store: BenchStore, db: Path) -> list[str]:
    return [
        "--tracking-uri",
        store.tracking_uri,
        "--experiment",
        store.experiment,
        "--db",
        str(db),
        "--subject-map",
        str(store.subject_map),
    ]


@dataclass(frozen=True)
class Baseline:
    """Reference peaks of a variant's process: ``imports`` only imports what it imports;
    ``ready`` also sets up what it uses before the first run (MLflow's SQLAlchemy tracking
    store and the listing of the experiment's runs; for ``extract`` the Dagster instance too),
    which MLflow and Dagster import and build lazily, on first use."""

    imports: int
    ready: int


def _summary(result: ProcessResult, runs: int, base: Baseline) -> dict[str, Any]:
    return {
        "wall_s": result.wall_s,
        "cpu_s": result.cpu_s,
        "runs_per_s": runs / result.wall_s if result.wall_s else None,
        "peak_rss_mb": result.peak_rss_bytes / MB,
        "import_rss_mb": base.imports / MB,
        "peak_above_import_mb": (result.peak_rss_bytes - base.imports) / MB,
        "ready_rss_mb": base.ready / MB,
        "peak_above_ready_mb": (result.peak_rss_bytes - base.ready) / MB,
        "load_avg": [round(result.load_before, 2), round(result.load_after, 2)],
    }


# A process that has set up what the variant uses, before its first run (see ``Baseline``).
READY = {
    "a": """
import sys
import baseline_exporter
from mlflow.tracking import MlflowClient
client = MlflowClient(sys.argv[1])
experiment = client.get_experiment_by_name(sys.argv[2])
client.search_runs([experiment.experiment_id], max_results=1000)
""",
    "b": """
import sys
import floor
from mlruns_assets.source.tracking import TrackingStore
store = TrackingStore(sys.argv[1])
(experiment,) = store.experiments([sys.argv[2]])
list(store.iter_runs(experiment.experiment_id))
""",
}


def baselines(store: BenchStore, home: Path) -> dict[str, Baseline]:
    """Import and ready baselines of every variant, measured on ``store``."""
    dummy = ["--tracking-uri", "-", "--experiment", "-", "--db", "-", "--imports-only"]
    imports = {
        "a": [PY, str(HERE / "baseline_exporter.py"), *dummy],
        "b": [PY, str(HERE / "floor.py"), *dummy],
        "c": [PY, "-c", "import mlruns_assets.cli.main, mlruns_assets.cli.extract"],
    }
    args = [store.tracking_uri, store.experiment]
    ready = {
        "a": [PY, "-c", READY["a"], *args],
        "b": [PY, "-c", READY["b"], *args],
        "c": [PY, "-c", STARTUP_FLOOR, *args, str(home)],
    }
    return {
        k: Baseline(
            run_measured(imports[k], cwd=HERE).check().peak_rss_bytes,
            run_measured(ready[k], cwd=HERE).check().peak_rss_bytes,
        )
        for k in imports
    }


def run_baseline(store: BenchStore, db: Path, base: Baseline) -> dict[str, Any]:
    result = run_measured([PY, str(HERE / "baseline_exporter.py"), *_store_args(store, db)])
    detail = json.loads(result.check().stdout.strip().splitlines()[-1])
    return {**_summary(result, detail["runs"], base), "detail": detail}


def run_floor(store: BenchStore, db: Path, base: Baseline) -> dict[str, Any]:
    result = run_measured([PY, str(HERE / "floor.py"), *_store_args(store, db)])
    detail = json.loads(result.check().stdout.strip().splitlines()[-1])
    runs = detail["runs"]
    phases = detail["phases_s"]
    extract = sum(
        phases[k] for k in ("runs_row", "metric_history", "load_artifact", "build_tables")
    )
    commit = phases["insert"] + phases["validate"]
    detail["per_partition_ms"] = {
        "extract": 1000 * extract / max(runs, 1),
        "commit": 1000 * commit / max(runs, 1),
        **{k: 1000 * v / max(runs, 1) for k, v in phases.items()},
    }
    return {**_summary(result, runs, base), "detail": detail}


def run_cli_extract(
    store: BenchStore, db: Path, home: Path, base: Baseline, expect_materialized: int | None
) -> dict[str, Any]:
    result = run_measured([CLI, "extract", *_store_args(store, db), "--dagster-home", str(home)])
    result.check()
    match = SUMMARY.search(result.stdout)
    if match is None:
        raise RuntimeError(f"no summary line in the extract output:\n{result.stdout}")
    materialized, skipped, seconds = int(match[1]), int(match[2]), float(match[3])
    if expect_materialized is not None and materialized != expect_materialized:
        raise RuntimeError(f"extract materialized {materialized}, expected {expect_materialized}")
    out = _summary(result, max(materialized, 1), base)
    out["runs_per_s"] = materialized / result.wall_s if materialized else None
    out["detail"] = {
        "materialized": materialized,
        "skipped": skipped,
        "in_process_s": seconds,  # run_extract's own clock: no interpreter start, no imports
        "startup_s": result.wall_s - seconds,
    }
    return out


def dagster_breakdown(home: Path, work_table: str = "runs") -> dict[str, Any]:
    """Where (c)'s time goes inside its Dagster runs, read back from the instance's event log.

    Per run: the ``*_PLANNED`` events written at run creation, the partitions' own work (the
    ``duration_s`` each partition records: extract + commit), the event writes of each
    partition (gaps between consecutive ASSET_MATERIALIZATION events), and the asset checks
    at the end of the step.
    """
    from mlruns_assets.runtime.instance import open_instance

    counts: dict[str, int] = {}
    planned_s = work_s = checks_s = runs_s = 0.0
    gaps: list[float] = []
    partitions = n_runs = 0
    with open_instance(home) as instance:
        for run in instance.get_runs():
            n_runs += 1
            records = instance.get_records_for_run(run.run_id, limit=10**7).records
            entries = [r.event_log_entry for r in records]
            types = [
                e.dagster_event.event_type_value if e.dagster_event else "LOG" for e in entries
            ]
            stamps = [e.timestamp for e in entries]
            for t in types:
                counts[t] = counts.get(t, 0) + 1
            runs_s += stamps[-1] - stamps[0]
            first_real = next(i for i, t in enumerate(types) if not t.endswith("_PLANNED"))
            planned_s += stamps[first_real] - stamps[0]
            logs = [i for i, t in enumerate(types) if t == "LOG"]
            success = types.index("STEP_SUCCESS") if "STEP_SUCCESS" in types else len(types) - 1
            if logs:
                checks_s += stamps[success] - stamps[logs[-1]]
            for i in range(1, len(entries)):
                if types[i] == types[i - 1] == "ASSET_MATERIALIZATION":
                    gaps.append(stamps[i] - stamps[i - 1])  # bounded: one per event
                event = entries[i].dagster_event
                if types[i] == "ASSET_MATERIALIZATION" and event is not None:
                    mat = event.event_specific_data.materialization  # type: ignore[union-attr]
                    duration = mat.metadata["duration_s"].value
                    if mat.asset_key.path[-1] == work_table and isinstance(duration, float):
                        work_s += duration
                        partitions += 1
    gaps.sort()
    per_event = gaps[len(gaps) // 2] if gaps else 0.0
    per_partition_events = (counts.get("ASSET_MATERIALIZATION", 0) + counts.get("LOG", 0)) / max(
        partitions, 1
    )
    materialization_events_s = per_event * per_partition_events * partitions
    return {
        "dagster_runs": n_runs,
        "events": counts,
        "events_total": sum(counts.values()),
        "events_per_partition": sum(counts.values()) / max(partitions, 1),
        "median_event_write_ms": 1000 * per_event,
        "runs_span_s": runs_s,
        "planned_events_s": planned_s,
        "partition_work_s": work_s,
        "materialization_events_s": materialization_events_s,
        "checks_s": checks_s,
        "other_in_runs_s": runs_s - planned_s - work_s - materialization_events_s - checks_s,
        "partitions": partitions,
    }


# What any ``extract`` process pays before it can look at a single run: the interpreter, the
# imports, MLflow's SQLAlchemy tracking store and the Dagster instance (both import and set up
# their ORM lazily, on first use).
STARTUP_FLOOR = """
import sys
from dataclasses import dataclass
from pathlib import Path
import mlruns_assets.cli.main, mlruns_assets.cli.extract
from mlruns_assets.runtime.instance import open_instance
from mlruns_assets.source.tracking import TrackingStore
TrackingStore(sys.argv[1]).experiments([sys.argv[2]])
with open_instance(Path(sys.argv[3])):
    pass
"""


def run_resume(store: BenchStore, db: Path, home: Path, base: Baseline) -> dict[str, Any]:
    """``extract`` on the complete database with every artifact out of reach, and the fixed cost
    of any ``extract`` process (``STARTUP_FLOOR``) measured the same way for comparison."""
    hidden = store.artifact_root.with_name("artifacts.hidden")
    store.artifact_root.rename(hidden)
    try:
        out = run_cli_extract(store, db, home, base, expect_materialized=0)
    finally:
        hidden.rename(store.artifact_root)
    floor = run_measured(
        [PY, "-c", STARTUP_FLOOR, store.tracking_uri, store.experiment, str(home)]
    ).check()
    out["detail"]["artifacts_hidden"] = True
    out["detail"]["opened_no_artifact"] = out["detail"]["skipped"] == len(store.run_ids)
    out["detail"]["startup_floor_s"] = floor.wall_s
    out["detail"]["beyond_startup_floor_s"] = out["wall_s"] - floor.wall_s
    return out


def db_mb(db: Path) -> float:
    """The database file plus its write-ahead log, in MB."""
    return sum(p.stat().st_size for p in (db, Path(f"{db}.wal")) if p.exists()) / MB


def run_commit_patterns(store: BenchStore, workdir: Path, partitions: int) -> dict[str, Any]:
    result = run_measured(
        [
            PY,
            str(HERE / "commit_patterns.py"),
            "--tracking-uri",
            store.tracking_uri,
            "--experiment",
            store.experiment,
            "--workdir",
            str(workdir),
            "--partitions",
            str(partitions),
        ]
    ).check()
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------- checks & report
def essential_rows(db: Path, schema: str = "classification") -> dict[str, tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute(
            f'SELECT run_id, {", ".join(ESSENTIAL_NUMERIC)} FROM "{schema}".essential_metrics'
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def table_rows(db: Path, schema: str = "classification") -> dict[str, int]:
    with duckdb.connect(str(db), read_only=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
                "ORDER BY table_name",
                [schema],
            ).fetchall()
        ]
        return {
            t: int((conn.execute(f'SELECT count(*) FROM "{schema}"."{t}"').fetchone() or [0])[0])
            for t in tables
        }


def consistency(dbs: dict[str, Path], reference: str = "c") -> dict[str, Any]:
    """essential_metrics of every variant against (c): same runs, max absolute difference."""
    ref = essential_rows(dbs[reference])
    ref_rows = table_rows(dbs[reference])
    out: dict[str, Any] = {"reference": reference, "runs": len(ref), "variants": {}}
    for name, db in dbs.items():
        rows = essential_rows(db)
        diff = 0.0
        mismatched_nulls = 0
        for run_id, values in rows.items():
            for x, y in zip(values, ref.get(run_id, (None,) * len(values)), strict=True):
                if x is None or y is None:
                    mismatched_nulls += (x is None) != (y is None)
                else:
                    diff = max(diff, abs(float(x) - float(y)))
        counts = table_rows(db)
        out["variants"][name] = {
            "same_runs": set(rows) == set(ref),
            "max_abs_diff": diff,
            "null_mismatches": mismatched_nulls,
            "same_row_counts": counts == ref_rows,
            "rows": counts,
        }
    return out


def largest_artifact(store: BenchStore) -> int:
    return max(p.stat().st_size for p in store.artifact_root.rglob("metrics_*.pickle"))


def ratio(x: float | None, y: float | None) -> float | None:
    return x / y if x is not None and y else None


def evaluate_targets(report: dict[str, Any]) -> dict[str, Any]:
    v = report["variants"]
    wall = {k: v[k]["wall_s"] for k in ("a", "b", "c") if k in v}
    d_wall = v["d"]["wall_s"] if "d" in v and not v["d"].get("skipped") else None
    artifact_mb = report["store"]["largest_artifact_mb"]
    out: dict[str, Any] = {
        "c_over_b": {"value": ratio(wall.get("c"), wall.get("b")), "target": "<= 1.3"},
        "c_over_b_in_process": {
            "value": ratio(v["c"]["detail"]["in_process_s"], v["b"]["detail"]["seconds"]),
            "target": "(info: without interpreter start and imports)",
        },
        "a_over_c": {"value": ratio(wall.get("a"), wall.get("c")), "target": ">= 2"},
        "d_over_c": {"value": ratio(d_wall, wall.get("c")), "target": "<= 2"},
        "resume_s": {
            "value": v["resume"]["wall_s"],
            "in_process_s": v["resume"]["detail"]["in_process_s"],
            "opened_no_artifact": v["resume"]["detail"]["opened_no_artifact"],
            "target": "< 3 s, no artifact opened",
        },
    }
    for k in ("a", "b", "c"):
        out[f"rss_{k}_over_artifact"] = {
            "value": ratio(v[k]["peak_above_import_mb"], artifact_mb),
            "above_ready": ratio(v[k]["peak_above_ready_mb"], artifact_mb),
            "target": "<= 3 (above imports; above ready in the next column)",
        }
    if "d" in v and not v["d"].get("skipped"):
        worker = v["d"]["worker_peak_rss_mb"] or 0.0
        out["rss_d_worker_over_artifact"] = {
            "value": ratio(worker - v["c"]["import_rss_mb"], artifact_mb),
            "above_ready": ratio(worker - v["c"]["ready_rss_mb"], artifact_mb),
            "target": "<= 3 (largest run worker, against extract's baselines)",
        }
    sweep = {(p["variant"], p["runs"]): p for p in report["sweep"]}
    sizes = sorted({n for _, n in sweep})
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        for k in ("b", "c"):
            if (k, lo) in sweep and (k, hi) in sweep:
                p_lo, p_hi = sweep[(k, lo)], sweep[(k, hi)]

                def drift(
                    key: str, lo_: dict[str, Any] = p_lo, hi_: dict[str, Any] = p_hi
                ) -> float | None:
                    return ratio(hi_[key] - lo_[key], lo_[key])

                out[f"rss_{k}_drift_{lo}_to_{hi}"] = {
                    "value": drift("peak_above_import_mb"),
                    "above_ready": drift("peak_above_ready_mb"),
                    "peak_rss": drift("peak_rss_mb"),
                    "target": "within 10 % (above imports; above ready next)",
                }
    return out


def fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def markdown(report: dict[str, Any]) -> str:
    cfg, v = report["config"], report["variants"]
    lines = [
        f"# Extraction benchmark: N={cfg['runs']} runs, B={cfg['bootstraps']} bootstraps",
        "",
        f"{report['machine']['cpus']} CPUs, shared with other test runs (1-minute load average "
        f"before/after each variant in the last column). Largest metrics pickle "
        f"{report['store']['largest_artifact_mb']:.1f} MB; store written in "
        f"{report['store']['generate_s']:.0f} s. Code: {report['code']['head']} + "
        f"{len(report['code']['modified_since_head'])} modified package files (sources hash "
        f"{report['code']['package_sha256']}; package files changed during the run: "
        f"{', '.join(report['code'].get('changed_during_run') or []) or 'none'}).",
        "",
        "Import MB: peak RSS of a process that only imports what the variant imports. Ready "
        "MB: one that also sets up what the variant uses before its first run (MLflow's "
        "SQLAlchemy store and the run listing; for extract also the Dagster instance), which "
        "MLflow and Dagster import lazily. Measurement floor "
        f"{fmt(report.get('measurement_floor_mb'), 0)} MB (see benchmarks/measure.py).",
        "",
        "| variant | wall s | runs/s | CPU s | peak RSS MB | import MB | above import MB "
        "| ready MB | above ready MB | DB MB | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    names = {
        "a": "(a) baseline: row-by-row INSERTs",
        "b": "(b) floor: Arrow, no Dagster",
        "c": "(c) `mlruns-assets extract`",
        "d": "(d) UI backfill (daemon)",
        "resume": "resume: `extract` on complete DB",
    }
    for key, label in names.items():
        if key not in v:
            continue
        r = v[key]
        if r.get("skipped"):
            lines.append(f"| {label} | skipped | | | | | | | | | |")
            continue
        if key == "d":
            lines.append(
                f"| {label} | {fmt(r['wall_s'], 1)} | {fmt(r['runs_per_s'])} | "
                f"{fmt(r['tree_cpu_s'], 1)} | {fmt(r['tree_peak_rss_mb'], 0)} tree, "
                f"{fmt(r['worker_peak_rss_mb'], 0)} worker | {fmt(r['tree_idle_rss_mb'], 0)} "
                f"idle tree | {fmt(r['tree_peak_above_idle_mb'], 0)} | | | "
                f"{fmt(r.get('db_mb'), 1)} | {r.get('load_avg', '-')} |"
            )
            continue
        lines.append(
            f"| {label} | {fmt(r['wall_s'], 1)} | {fmt(r['runs_per_s'])} | {fmt(r['cpu_s'], 1)} "
            f"| {fmt(r['peak_rss_mb'], 0)} | {fmt(r['import_rss_mb'], 0)} "
            f"| {fmt(r['peak_above_import_mb'], 0)} | {fmt(r['ready_rss_mb'], 0)} "
            f"| {fmt(r['peak_above_ready_mb'], 0)} | {fmt(r.get('db_mb'), 1)} "
            f"| {r['load_avg']} |"
        )
    resume = v.get("resume", {}).get("detail")
    if resume:
        lines += [
            "",
            f"Resume: {resume['skipped']} partitions skipped, none materialized, with the store's "
            f"artifact folder renamed away (opened no artifact: {resume['opened_no_artifact']}). "
            f"A process that only imports, opens the tracking store and the Dagster instance "
            f"takes {fmt(resume['startup_floor_s'], 1)} s on its own; resume spends "
            f"{fmt(resume['beyond_startup_floor_s'], 1)} s beyond that.",
        ]
    d = v.get("d")
    if d and not d.get("skipped"):
        lines += [
            "",
            f"Backfill: {d['runs']} range runs ({', '.join(d['run_statuses'])}); first run "
            f"started {fmt(d['first_run_started_after_s'], 1)} s after the launch mutation; "
            f"run time summed over runs {fmt(d['run_seconds_sum'], 1)} s; "
            f"{d['worker_processes']} worker processes; webserver and daemon start-up "
            f"(not timed) {fmt(d['startup_s'].get('webserver_s'), 1)} s and "
            f"{fmt(d['startup_s'].get('daemon_s'), 1)} s.",
        ]
    lines += [
        "",
        "## Targets (reported, not asserted)",
        "",
        "| target | value | above ready | goal |",
        "|---|---:|---:|---|",
    ]
    for name, t in report["targets"].items():
        lines.append(
            f"| {name} | {fmt(t['value'])} | {fmt(t.get('above_ready'))} | {t['target']} |"
        )
    if "breakdown" in report:
        b = report["breakdown"]
        lines += [
            "",
            "## Where (c) spends its time vs (b), per partition (ms)",
            "",
            "| part | ms/partition |",
            "|---|---:|",
        ]
        lines += [f"| {k} | {fmt(val, 1)} |" for k, val in b["per_partition_ms"].items()]
        lines += [
            "",
            f"Events per partition: {fmt(b['events_per_partition'], 1)} "
            f"({b['dagster_runs']} Dagster runs); median write of one ASSET_MATERIALIZATION "
            f"event: {fmt(b['median_event_write_ms'], 1)} ms.",
        ]
    cp = report.get("commit_patterns")
    if cp:
        lines += [
            "",
            f"## Commit pattern alone ({cp['partitions']} partitions of one real run's "
            f"{cp['rows_per_partition']} rows, with validation)",
            "",
            "| pattern | ms/partition | DB MB | full-table GROUP BY peak MB |",
            "|---|---:|---:|---:|",
        ]
        for pattern in (
            "one_connection",
            "partition_writer",
            "per_partition",
            "per_partition_vacuum",
        ):
            if pattern in cp:
                r = cp[pattern]
                lines.append(
                    f"| {pattern} | {fmt(r['ms_per_partition'], 1)} | {fmt(r['db_mb'], 1)} | "
                    f"{fmt(r['full_scan_peak_mb'], 1)} |"
                )
        lines += [
            "",
            f"per_partition uses the project's storage settings "
            f"{cp['project_storage_settings']}; per_partition_vacuum DuckDB's default "
            f"max_vacuum_tasks = 100.",
        ]
    if report["sweep"]:
        lines += [
            "",
            "## N sweep",
            "",
            "| variant | N | wall s | runs/s | peak RSS MB | above import MB | above ready MB "
            "| DB MB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for p in sorted(report["sweep"], key=lambda p: (p["variant"], p["runs"])):
            lines.append(
                f"| ({p['variant']}) | {p['runs']} | {fmt(p['wall_s'], 1)} | "
                f"{fmt(p['runs_per_s'])} | {fmt(p['peak_rss_mb'], 0)} | "
                f"{fmt(p['peak_above_import_mb'], 0)} | {fmt(p.get('peak_above_ready_mb'), 0)} "
                f"| {fmt(p.get('db_mb'), 1)} |"
            )
        lines += ["", report["config"]["sweep_note"]]
    c = report.get("consistency")
    if c:
        lines += ["", f"## essential_metrics vs ({c['reference']}) over {c['runs']} runs", ""]
        for name, item in c["variants"].items():
            lines.append(
                f"- ({name}): same runs {item['same_runs']}, max |diff| "
                f"{item['max_abs_diff']:.2e}, NULL mismatches {item['null_mismatches']}, "
                f"same row counts in every table {item['same_row_counts']}"
            )
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for variant, label, marker in (("b", "(b) floor", "o"), ("c", "(c) extract", "s")):
        points = sorted(
            (p["runs"], p["wall_s"], p["peak_above_import_mb"], p["peak_above_ready_mb"])
            for p in report["sweep"]
            if p["variant"] == variant
        )
        if not points:
            continue
        n, t, m, r = zip(*points, strict=True)
        (line,) = ax_t.plot(n, t, marker=marker, label=label)
        ax_m.plot(n, m, marker=marker, color=line.get_color(), label=f"{label}, above import")
        ax_m.plot(
            n,
            r,
            marker=marker,
            color=line.get_color(),
            linestyle=":",
            label=f"{label}, above ready",
        )
    artifact = report["store"]["largest_artifact_mb"]
    ax_m.axhline(3 * artifact, color="grey", linestyle="--", label="3x largest artifact")
    ax_t.set(xlabel="runs (N)", ylabel="wall time (s)", title="Time vs N")
    ax_m.set(xlabel="runs (N)", ylabel="peak RSS above baseline (MB)", title="Peak RSS vs N")
    ax_m.set_ylim(bottom=0)
    for ax in (ax_t, ax_m):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    cfg = report["config"]
    fig.suptitle(f"mlruns-assets extraction, B={cfg['bootstraps']} (2-core shared machine)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main
def _point(result: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "wall_s",
        "runs_per_s",
        "peak_rss_mb",
        "peak_above_import_mb",
        "peak_above_ready_mb",
        "db_mb",
    )
    return {k: result.get(k) for k in keys}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--bootstraps", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "report.json")
    parser.add_argument(
        "--sweep",
        default="50,100,200,400",
        help="comma-separated N for the sweep of (b) and (c) (sizes above --runs are dropped; "
        "'' for none)",
    )
    parser.add_argument("--skip-backfill", action="store_true", help="do not run variant (d)")
    parser.add_argument("--workdir", type=Path, help="keep the store and databases here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--commit-partitions",
        type=int,
        default=60,
        help="partitions per pattern in the commit-pattern micro-benchmark (0: skip it)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keep = args.workdir is not None
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="mlra-bench-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    sizes = sorted({int(s) for s in args.sweep.split(",") if s.strip()})
    sizes = [n for n in sizes if 0 < n <= args.runs]
    report: dict[str, Any] = {
        "config": {
            "runs": args.runs,
            "bootstraps": args.bootstraps,
            "seed": args.seed,
            "sweep": sizes,
            "sweep_note": (
                "Sweep stores hold the first N runs of the main store, re-logged through MLflow "
                "with their artifact files hard-linked (byte-identical pickles); the N = --runs "
                "point is the main measurement itself."
            ),
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "variants": {},
        "sweep": [],
    }
    try:
        log(f"writing the store: {args.runs} runs, B={args.bootstraps} into {workdir}")
        started = time.perf_counter()
        store = write_benchmark_store(workdir / "store", args.runs, args.bootstraps, args.seed)
        report["store"] = {
            "generate_s": time.perf_counter() - started,
            "largest_artifact_mb": largest_artifact(store) / MB,
            "runs": len(store.run_ids),
        }
        # The measured code: fingerprinted once the store is written, checked again at the end.
        report["code"] = code_fingerprint()
        log("import and ready baselines")
        base = baselines(store, workdir / "ready_home")
        report["baselines_mb"] = {
            k: {"imports": b.imports / MB, "ready": b.ready / MB} for k, b in base.items()
        }
        report["measurement_floor_mb"] = measurement_floor() / MB
        v = report["variants"]
        dbs = {k: workdir / f"{k}.duckdb" for k in ("a", "b", "c", "d")}
        n = len(store.run_ids)

        log("(a) baseline exporter")
        v["a"] = run_baseline(store, dbs["a"], base["a"])
        v["a"]["db_mb"] = db_mb(dbs["a"])
        log(f"(a) {v['a']['wall_s']:.1f} s")
        log("(b) floor")
        v["b"] = run_floor(store, dbs["b"], base["b"])
        v["b"]["db_mb"] = db_mb(dbs["b"])
        log(f"(b) {v['b']['wall_s']:.1f} s")
        log("(c) mlruns-assets extract")
        v["c"] = run_cli_extract(store, dbs["c"], workdir / "c_home", base["c"], n)
        v["c"]["db_mb"] = db_mb(dbs["c"])
        log(f"(c) {v['c']['wall_s']:.1f} s")
        breakdown = dagster_breakdown(workdir / "c_home")
        floor_ms = v["b"]["detail"]["per_partition_ms"]
        per = 1000 / max(n, 1)
        breakdown["per_partition_ms"] = {
            "(b) extract: metric history, artifact load, tables": floor_ms["extract"],
            "(b) commit: insert + validate + commit": floor_ms["commit"],
            "(b) total in-process": 1000 * v["b"]["detail"]["seconds"] / max(n, 1),
            "(c) partition work (duration_s: extract + commit)": breakdown["partition_work_s"]
            * per,
            "(c) *_PLANNED events at run creation": breakdown["planned_events_s"] * per,
            "(c) materialization + progress events": breakdown["materialization_events_s"] * per,
            "(c) asset checks at the end of each run": breakdown["checks_s"] * per,
            "(c) rest inside Dagster runs": breakdown["other_in_runs_s"] * per,
            "(c) outside runs (discovery, status queries)": (
                v["c"]["detail"]["in_process_s"] - breakdown["runs_span_s"]
            )
            * per,
            "(c) total in-process": 1000 * v["c"]["detail"]["in_process_s"] / max(n, 1),
            "(c) interpreter start + imports (once)": 1000
            * v["c"]["detail"]["startup_s"]
            / max(n, 1),
        }
        report["breakdown"] = breakdown

        log("resume: extract again on the complete database, artifacts hidden")
        v["resume"] = run_resume(store, dbs["c"], workdir / "c_home", base["c"])
        log(f"resume {v['resume']['wall_s']:.1f} s")

        if args.skip_backfill:
            v["d"] = {"skipped": True}
            dbs.pop("d")
        else:
            from backfill import run_backfill

            from mlruns_assets.runtime.settings import Settings

            log("(d) backfill through dagster-webserver + dagster-daemon")
            config = Settings(
                tracking_uri=store.tracking_uri,
                database=str(dbs["d"]),
                experiments=(store.experiment,),
                subject_map=str(store.subject_map),
            )
            load_before = os.getloadavg()[0]
            d = run_backfill(config, store.experiment, workdir / "d")
            d["runs_per_s"] = d["partitions"] / d["wall_s"] if d["wall_s"] else None
            d["load_avg"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
            d["db_mb"] = db_mb(dbs["d"])
            v["d"] = d
            log(f"(d) {d['wall_s']:.1f} s")

        report["consistency"] = consistency({k: dbs[k] for k in dbs})

        if args.commit_partitions:
            log(f"commit patterns: {args.commit_partitions} partitions each")
            report["commit_patterns"] = run_commit_patterns(
                store, workdir / "commit_patterns", args.commit_partitions
            )

        if n in sizes:
            for variant in ("b", "c"):
                report["sweep"].append({"variant": variant, "runs": n, **_point(v[variant])})
        for size in sizes:
            if size == n:
                continue
            log(f"sweep N={size}: subset store")
            sub = write_subset_store(store, size, workdir / f"store_{size}")
            sub_base = baselines(sub, workdir / f"ready_home_{size}")
            for variant in ("b", "c"):
                db = workdir / f"sweep_{variant}_{size}.duckdb"
                if variant == "b":
                    r = run_floor(sub, db, sub_base["b"])
                else:
                    r = run_cli_extract(
                        sub, db, workdir / f"sweep_c_{size}_home", sub_base["c"], size
                    )
                r["db_mb"] = db_mb(db)
                log(f"sweep ({variant}) N={size}: {r['wall_s']:.1f} s")
                report["sweep"].append({"variant": variant, "runs": size, **_point(r)})
            if not keep:
                shutil.rmtree(workdir / f"store_{size}", ignore_errors=True)

        report["targets"] = evaluate_targets(report)
        report["config"]["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        before, after = report["code"]["files_sha256"], code_fingerprint()["files_sha256"]
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        report["code"]["changed_during_run"] = changed
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)

    out: Path = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    md = markdown(report)
    out.with_suffix(".md").write_text(md)
    plot(report, out.with_suffix(".png"))
    print(md)
    log(f"wrote {out}, {out.with_suffix('.md')}, {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
