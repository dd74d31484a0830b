"""Benchmark harness (issues 6 and 13): one seed-shaped store, extracted side by side in one run.

    .venv/bin/python benchmarks/run.py --runs 400 --bootstraps 1000
        --out benchmarks/results/report.json [--workdir DIR [--reuse [--rerun KEYS]]]

Variants, each in a fresh child process on a fresh database (peak RSS per variant):
  floor_physical  benchmarks/floor.py --physical: runs listed and metric histories read first
                  (not timed), then per run: the metrics pickle read from disk with the allow-list
                  unpickler, the tables built, Arrow appends into the 11 tables and one commit
                  per run on one DuckDB connection; no Dagster (issue 13's reference for (c))
  b               benchmarks/floor.py: the project's extraction calls + replace_partition with
                  in-transaction validation, no Dagster (issue 6's floor)
  c1              ``mlruns-assets extract --workers 1`` (the console script), kept-connection
                  Dagster storage (the project's dagster.yaml)
  c1_stock        the same with Dagster's stock instance and SQLite storage (a home whose
                  dagster.yaml has no ``instance_class:``, no ``storage:`` block)
  c2              ``mlruns-assets extract --workers 2``; peak RSS of the whole process tree
                  (the command, its fork server and the worker processes: see measure.py)
  resume          ``mlruns-assets extract`` again on c1's complete database, with the store's
                  artifact folder renamed away (proves that no artifact is opened)
  a100, c100      the first extract of the first 100 runs: (a) the seed-style row-by-row
                  exporter (benchmarks/baseline_exporter.py, REFERENCE ONLY) vs ``extract`` with
                  its default workers, whole-process wall time (start-up included)
  d               the UI's LaunchPartitionBackfill mutation against dagster-webserver, executed
                  by ``dagster-daemon run`` (benchmarks/backfill.py)
plus levers measured in one process on the same store (benchmarks/levers.py), the commit-pattern
micro-benchmark, an N sweep of floor_physical and extract (default workers), and the signals
benchmark (benchmarks/signals_bench.py, 20 runs x 507 subjects x 1,981 points). Peak RSS is also
reported above an import baseline: the peak of a child process that imports what the variant
imports and exits. Every figure carries the 1-minute load average before/after it: the machine
is shared.

Writes the JSON report to --out, and report.md / report.png beside it. Targets are reported as
ratios, never asserted. The store and databases live in --workdir (default: a temporary folder,
removed at the end). With --workdir and --reuse, a store written by an earlier run with the same
settings is reused, and so is each step's saved result (steps/*.json) unless named in --rerun.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import yaml
from benchmark_report import evaluate_levers, evaluate_targets, markdown, plot
from measure import MB, ProcessResult, measurement_floor, run_measured
from store import BenchStore, reuse_or_write_store, reuse_or_write_subset

HERE = Path(__file__).resolve().parent
PY = sys.executable
CLI = str(Path(sys.executable).parent / "mlruns-assets")  # the installed console script
SUMMARY = re.compile(r"materialized (\d+), skipped (\d+) .* in ([\d.]+) s")
WORKERS = re.compile(r"\((\d+) worker processes\)")
INSTANCE_TEMPLATE = HERE.parent / "mlruns_assets" / "dagster.yaml"
FIRST_EXTRACT_RUNS = 100
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


def code_fingerprint() -> dict[str, Any]:
    """What code was measured: HEAD, files changed since, and a hash of the package's sources
    (compared at the end: other people edit the tree while benchmarks run)."""
    digest = hashlib.sha256()
    files: dict[str, str] = {}
    package = HERE.parent / "mlruns_assets"
    for path in sorted(p for p in package.rglob("*") if p.suffix in (".py", ".yaml")):
        name = path.relative_to(package).as_posix()
        digest.update(name.encode() + path.read_bytes())
        files[name] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]

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


def run_physical_floor(store: BenchStore, db: Path, base: Baseline) -> dict[str, Any]:
    result = run_measured([PY, str(HERE / "floor.py"), "--physical", *_store_args(store, db)])
    detail = json.loads(result.check().stdout.strip().splitlines()[-1])
    runs = detail["runs"]
    detail["per_partition_ms"] = {
        "total": 1000 * detail["seconds"] / max(runs, 1),
        **{k: 1000 * v / max(runs, 1) for k, v in detail["phases_s"].items()},
    }
    return {**_summary(result, runs, base), "detail": detail}


def stock_dagster_home(home: Path) -> Path:
    """A Dagster home whose dagster.yaml is the project's without its ``instance_class:`` (the
    kept-connection instance) and ``storage:`` blocks: Dagster's stock instance and SQLite
    storage, everything else as configured."""
    home.mkdir(parents=True, exist_ok=True)
    text = INSTANCE_TEMPLATE.read_text(encoding="utf-8")
    stock = re.sub(
        r"^(?:instance_class|storage):\n(?:[ \t].*\n|[ \t]*\n)*", "", text, flags=re.MULTILINE
    )
    config = yaml.safe_load(stock) or {}
    kept = (yaml.safe_load(text) or {}).keys() - {"instance_class", "storage"}
    if {"instance_class", "storage"} & config.keys() or config.keys() != kept:
        raise RuntimeError("could not remove the instance_class/storage blocks of dagster.yaml")
    (home / "dagster.yaml").write_text(stock, encoding="utf-8")
    return home


def fresh(*paths: Path) -> None:
    """Remove databases (with their write-ahead logs) and Dagster homes of an earlier run."""
    for path in paths:
        for p in (path, Path(f"{path}.wal")):
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()


def run_cli_extract(
    store: BenchStore,
    db: Path,
    home: Path,
    base: Baseline,
    expect_materialized: int | None,
    *,
    workers: int | None = None,
    tree: bool = True,
) -> dict[str, Any]:
    """``mlruns-assets extract`` (the console script); ``workers`` None: its default."""
    command = [CLI, "extract", *_store_args(store, db), "--dagster-home", str(home)]
    if workers is not None:
        command += ["--workers", str(workers)]
    result = run_measured(command, tree=tree)
    result.check()
    match = SUMMARY.search(result.stdout)
    if match is None:
        raise RuntimeError(f"no summary line in the extract output:\n{result.stdout}")
    materialized, skipped, seconds = int(match[1]), int(match[2]), float(match[3])
    if expect_materialized is not None and materialized != expect_materialized:
        raise RuntimeError(f"extract materialized {materialized}, expected {expect_materialized}")
    pool = WORKERS.search(result.stdout)
    out = _summary(result, max(materialized, 1), base)
    out["runs_per_s"] = materialized / result.wall_s if materialized else None
    out["detail"] = {
        "materialized": materialized,
        "skipped": skipped,
        "in_process_s": seconds,  # run_extract's own clock: no interpreter start, no imports
        "startup_s": result.wall_s - seconds,
        "ms_per_partition_in_process": 1000 * seconds / materialized if materialized else None,
        "runs_per_s_in_process": materialized / seconds if materialized and seconds else None,
        "workers_requested": workers,
        "worker_processes": int(pool[1]) if pool else 0,
        "summary_line": next(
            (line for line in result.stdout.splitlines() if SUMMARY.search(line)), ""
        ),
    }
    if result.tree:
        t = result.tree
        # The tree's polled peak, or the command's own kernel peak when that is higher (a poll
        # can miss a spike; a single-process command's wait4 figure misses nothing).
        peak = max(t["peak_rss_sum_mb"], result.peak_rss_bytes / MB)
        out["tree"] = t
        out["tree_peak_rss_mb"] = peak
        out["tree_peak_above_import_mb"] = peak - base.imports / MB
        out["tree_peak_pss_above_import_mb"] = (
            max(t["peak_pss_sum_mb"], 0.0) - base.imports / MB if t["peak_pss_sum_mb"] else None
        )
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
        classes = {
            "instance_class": type(instance).__name__,
            "run_storage_class": type(instance.run_storage).__name__,
            "event_storage_class": type(instance.event_log_storage).__name__,
        }
        for run in instance.get_runs():
            if not run.job_name.endswith("_extraction_job"):  # not the leaderboard refresh
                continue
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
        **classes,
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


def per_partition_breakdown(
    b: dict[str, Any], c: dict[str, Any], floor: dict[str, Any] | None, n: int
) -> dict[str, float]:
    """Where an extract variant's in-process time goes, per partition (ms), from its
    ``dagster_breakdown`` and (b)'s phases when (b) ran."""
    per = 1000 / max(n, 1)
    out: dict[str, float] = {}
    if floor:
        floor_ms = floor["detail"]["per_partition_ms"]
        out["(b) extract: metric history, artifact load, tables"] = floor_ms["extract"]
        out["(b) commit: insert + validate + commit"] = floor_ms["commit"]
        out["(b) total in-process"] = 1000 * floor["detail"]["seconds"] / max(n, 1)
    out.update(
        {
            "(c) partition work (duration_s: extract + commit)": b["partition_work_s"] * per,
            "(c) *_PLANNED events at run creation": b["planned_events_s"] * per,
            "(c) materialization + progress events": b["materialization_events_s"] * per,
            "(c) asset checks at the end of each run": b["checks_s"] * per,
            "(c) rest inside Dagster runs": b["other_in_runs_s"] * per,
            "(c) outside runs (discovery, status queries)": (
                c["detail"]["in_process_s"] - b["runs_span_s"]
            )
            * per,
            "(c) total in-process": 1000 * c["detail"]["in_process_s"] / max(n, 1),
            "(c) interpreter start + imports (once)": 1000 * c["detail"]["startup_s"] / max(n, 1),
        }
    )
    return out


def run_resume(store: BenchStore, db: Path, home: Path, base: Baseline) -> dict[str, Any]:
    """``extract`` (default workers) on the complete database with every artifact out of
    reach, and the fixed cost of any ``extract`` process (``STARTUP_FLOOR``) measured the same
    way for comparison."""
    hidden = store.artifact_root.with_name("artifacts.hidden")
    store.artifact_root.rename(hidden)
    try:
        out = run_cli_extract(store, db, home, base, expect_materialized=0, tree=False)
    finally:
        hidden.rename(store.artifact_root)
    floor = run_measured(
        [PY, "-c", STARTUP_FLOOR, store.tracking_uri, store.experiment, str(home)]
    ).check()
    out["detail"]["artifacts_hidden"] = True
    out["detail"]["opened_no_artifact"] = out["detail"]["skipped"] == len(store.run_ids)
    out["detail"]["startup_floor_s"] = floor.wall_s
    out["detail"]["startup_floor_load_avg"] = [
        round(floor.load_before, 2),
        round(floor.load_after, 2),
    ]
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
    """Rows per extracted table (not the leaderboard, which ``extract`` adds after the runs)."""
    with duckdb.connect(str(db), read_only=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
                "AND table_name <> 'leaderboard' ORDER BY table_name",
                [schema],
            ).fetchall()
        ]
        return {
            t: int((conn.execute(f'SELECT count(*) FROM "{schema}"."{t}"').fetchone() or [0])[0])
            for t in tables
        }


def consistency(dbs: dict[str, Path], reference: str = "c1") -> dict[str, Any]:
    """essential_metrics of every variant against ``reference``: same runs, max |diff|."""
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


def _load(result: ProcessResult) -> list[float]:
    return [round(result.load_before, 2), round(result.load_after, 2)]


def run_levers(store: BenchStore, complete_db: Path, home: Path, workdir: Path) -> dict[str, Any]:
    result = run_measured(
        [
            PY,
            str(HERE / "levers.py"),
            "--tracking-uri",
            store.tracking_uri,
            "--experiment",
            store.experiment,
            "--db",
            str(complete_db),
            "--subject-map",
            str(store.subject_map),
            "--workdir",
            str(workdir),
            "--dagster-home",
            str(home),
        ]
    ).check()
    out = dict(json.loads(result.stdout.strip().splitlines()[-1]))
    out["wall_s"] = result.wall_s
    out["load_avg"] = _load(result)
    return out


def run_signals(workdir: Path, out: Path) -> dict[str, Any]:
    """benchmarks/signals_bench.py at its defaults (20 runs x 507 subjects x 1,981 points)."""
    result = run_measured(
        [PY, str(HERE / "signals_bench.py"), "--out", str(out), "--workdir", str(workdir)],
        cwd=HERE,
    ).check()
    report = dict(json.loads(out.read_text()))
    report["wall_s"] = result.wall_s
    report["load_avg"] = _load(result)
    report["path"] = str(out)
    return report


# --------------------------------------------------------------------------- main
def _point(variant: str, result: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "wall_s",
        "runs_per_s",
        "peak_rss_mb",
        "peak_above_import_mb",
        "tree_peak_above_import_mb",
        "db_mb",
        "load_avg",
    )
    detail = result.get("detail", {})
    return {
        "variant": variant,
        "runs": detail.get("materialized", detail.get("runs")),
        "in_process_s": detail.get("in_process_s", detail.get("seconds")),
        **{k: result.get(k) for k in keys},
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--bootstraps", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "report.json")
    parser.add_argument(
        "--sweep",
        default="100,400",
        help="comma-separated N for the sweep of the physical floor and extract (default "
        "workers); sizes above --runs are dropped; '' for none",
    )
    parser.add_argument("--skip-backfill", action="store_true", help="do not run variant (d)")
    parser.add_argument("--skip-project-floor", action="store_true", help="do not run variant (b)")
    parser.add_argument(
        "--skip-signals", action="store_true", help="do not run benchmarks/signals_bench.py"
    )
    parser.add_argument("--workdir", type=Path, help="keep the store and databases here")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --workdir: reuse the store and every step's saved result (steps/*.json)",
    )
    parser.add_argument(
        "--rerun",
        default="",
        help="with --reuse: comma-separated steps to run again (e.g. c1,resume,levers)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        help="only recompute the targets and levers of this report.json and write its "
        "report.md / report.png again (no measurement)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--commit-partitions",
        type=int,
        default=60,
        help="partitions per pattern in the commit-pattern micro-benchmark (0: skip it)",
    )
    return parser.parse_args(argv)


class Steps:
    """Runs each named step, saving its result under ``workdir/steps`` (reused with --reuse
    unless the step is named in --rerun)."""

    def __init__(self, workdir: Path, reuse: bool, rerun: set[str]) -> None:
        self.folder = workdir / "steps"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.reuse, self.rerun = reuse, rerun
        self.reused: list[str] = []

    def __call__(self, key: str, work: Callable[[], Any]) -> Any:
        path = self.folder / f"{key}.json"
        if self.reuse and key not in self.rerun and path.exists():
            self.reused.append(key)
            log(f"{key}: reused {path}")
            return json.loads(path.read_text())
        log(f"{key}: start (load {os.getloadavg()[0]:.2f})")
        result = work()
        path.write_text(json.dumps(result, indent=1, default=str))
        wall = result.get("wall_s") if isinstance(result, dict) else None
        log(f"{key}: done{f' {wall:.1f} s' if isinstance(wall, float) else ''}")
        return result


def render(path: Path) -> int:
    """Targets, levers, report.md and report.png again from a report.json's measurements."""
    report = json.loads(path.read_text())
    report["targets"] = evaluate_targets(report)
    report["levers_table"] = evaluate_levers(report)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    md = markdown(report)
    path.with_suffix(".md").write_text(md)
    plot(report, path.with_suffix(".png"))
    print(md)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        return render(args.render.resolve())
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
                "points are the main measurements (floor_physical, c2) and N = 100 of extract "
                "is c100."
            ),
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "argv": sys.argv[1:] if argv is None else argv,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "variants": {},
        "sweep": [],
    }
    steps = Steps(workdir, args.reuse and keep, {s for s in args.rerun.split(",") if s})
    try:
        log(f"the store: {args.runs} runs, B={args.bootstraps} in {workdir}")
        started = time.perf_counter()
        if args.reuse and keep:
            store, reused = reuse_or_write_store(
                workdir / "store", args.runs, args.bootstraps, args.seed
            )
        else:
            fresh(workdir / "store")
            store, reused = reuse_or_write_store(
                workdir / "store", args.runs, args.bootstraps, args.seed
            )
        report["store"] = {
            "generate_s": time.perf_counter() - started,
            "reused": reused,
            "largest_artifact_mb": largest_artifact(store) / MB,
            "runs": len(store.run_ids),
        }
        small_n = min(FIRST_EXTRACT_RUNS, len(store.run_ids))
        log(f"subset store of the first {small_n} runs")
        small = reuse_or_write_subset(store, small_n, workdir / f"store_{small_n}")
        # The measured code: fingerprinted once the store is written, checked again at the end.
        report["code"] = code_fingerprint()
        base = {
            k: Baseline(**b)
            for k, b in steps(
                "baselines",
                lambda: {
                    k: {"imports": b.imports, "ready": b.ready}
                    for k, b in baselines(store, workdir / "ready_home").items()
                },
            ).items()
        }
        base_small = {
            k: Baseline(**b)
            for k, b in steps(
                f"baselines_{small_n}",
                lambda: {
                    k: {"imports": b.imports, "ready": b.ready}
                    for k, b in baselines(small, workdir / f"ready_home_{small_n}").items()
                },
            ).items()
        }
        report["baselines_mb"] = {
            k: {"imports": b.imports / MB, "ready": b.ready / MB} for k, b in base.items()
        }
        report["measurement_floor_mb"] = measurement_floor() / MB
        v = report["variants"]
        n = len(store.run_ids)
        dbs = {
            k: workdir / f"{k}.duckdb"
            for k in ("floor_physical", "b", "c1", "c1_stock", "c2", "d", "a100", "c100")
        }
        homes = {k: workdir / f"{k}_home" for k in ("c1", "c1_stock", "c2", "c100")}

        def with_db(key: str, work: Callable[[], dict[str, Any]]) -> Callable[[], Any]:
            def go() -> dict[str, Any]:
                fresh(dbs[key], *([homes[key]] if key in homes else []))
                out = work()
                out["db_mb"] = db_mb(dbs[key])
                return out

            return go

        v["floor_physical"] = steps(
            "floor_physical",
            with_db(
                "floor_physical",
                lambda: run_physical_floor(store, dbs["floor_physical"], base["b"]),
            ),
        )
        v["c1"] = steps(
            "c1",
            with_db(
                "c1",
                lambda: run_cli_extract(store, dbs["c1"], homes["c1"], base["c"], n, workers=1),
            ),
        )

        def stock() -> dict[str, Any]:
            home = stock_dagster_home(homes["c1_stock"])
            return run_cli_extract(store, dbs["c1_stock"], home, base["c"], n, workers=1)

        v["c1_stock"] = steps("c1_stock", with_db("c1_stock", stock))
        v["c2"] = steps(
            "c2",
            with_db(
                "c2",
                lambda: run_cli_extract(store, dbs["c2"], homes["c2"], base["c"], n, workers=2),
            ),
        )
        if not args.skip_project_floor:
            v["b"] = steps("b", with_db("b", lambda: run_floor(store, dbs["b"], base["b"])))
        else:
            dbs.pop("b")

        def breakdown_of(key: str) -> dict[str, Any]:
            b = dagster_breakdown(homes[key])
            b["per_partition_ms"] = per_partition_breakdown(b, v[key], v.get("b"), n)
            return b

        report["breakdowns"] = {
            key: steps(f"breakdown_{key}", lambda key=key: breakdown_of(key))
            for key in ("c1", "c1_stock", "c2")
        }
        v["resume"] = steps("resume", lambda: run_resume(store, dbs["c1"], homes["c1"], base["c"]))
        report["levers"] = steps(
            "levers", lambda: run_levers(store, dbs["c1"], homes["c1"], workdir / "levers")
        )
        v["a100"] = steps(
            "a100",
            with_db("a100", lambda: run_baseline(small, dbs["a100"], base_small["a"])),
        )
        v["c100"] = steps(
            "c100",
            with_db(
                "c100",
                lambda: run_cli_extract(
                    small, dbs["c100"], homes["c100"], base_small["c"], small_n
                ),
            ),
        )

        if args.skip_backfill:
            v["d"] = {"skipped": True}
            dbs.pop("d")
        else:
            from backfill import run_backfill

            from mlruns_assets.runtime.settings import Settings

            def backfill() -> dict[str, Any]:
                fresh(dbs["d"], workdir / "d")
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
                return d

            v["d"] = steps("d", backfill)

        if args.commit_partitions:

            def patterns() -> dict[str, Any]:
                load_before = os.getloadavg()[0]
                cp = run_commit_patterns(store, workdir / "commit_patterns", args.commit_partitions)
                cp["load_avg"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
                return cp

            report["commit_patterns"] = steps("commit_patterns", patterns)

        for key, variant in (("floor_physical", "floor_physical"), ("c2", "extract")):
            if n in sizes:
                report["sweep"].append(_point(variant, v[key]))
        if small_n in sizes and small_n != n:
            report["sweep"].append(_point("extract", v["c100"]))
        for size in sizes:
            if size == n:
                continue
            sub = reuse_or_write_subset(store, size, workdir / f"store_{size}")
            sub_base = base_small if size == small_n else None
            if sub_base is None:
                sub_base = {
                    k: Baseline(**b)
                    for k, b in steps(
                        f"baselines_{size}",
                        lambda sub=sub, size=size: {
                            k: {"imports": b.imports, "ready": b.ready}
                            for k, b in baselines(sub, workdir / f"ready_home_{size}").items()
                        },
                    ).items()
                }
            db = workdir / f"sweep_floor_physical_{size}.duckdb"

            def sweep_floor(sub: BenchStore = sub, db: Path = db, sb: Any = sub_base) -> Any:
                fresh(db)
                r = run_physical_floor(sub, db, sb["b"])
                r["db_mb"] = db_mb(db)
                return r

            r = steps(f"sweep_floor_physical_{size}", sweep_floor)
            report["sweep"].append(_point("floor_physical", r))
            if size != small_n:
                db = workdir / f"sweep_c_{size}.duckdb"
                home = workdir / f"sweep_c_{size}_home"

                def sweep_c(
                    sub: BenchStore = sub, db: Path = db, home: Path = home, sb: Any = sub_base
                ) -> Any:
                    fresh(db, home)
                    r = run_cli_extract(sub, db, home, sb["c"], len(sub.run_ids))
                    r["db_mb"] = db_mb(db)
                    return r

                report["sweep"].append(_point("extract", steps(f"sweep_c_{size}", sweep_c)))

        if not args.skip_signals:
            signals_out = args.out.resolve().with_name("signals.json")
            report["signals"] = steps(
                "signals", lambda: run_signals(workdir / "signals", signals_out)
            )

        log("consistency")
        big = {k: dbs[k] for k in dbs if k not in ("a100", "c100")}
        report["consistency"] = {
            f"N={n}": consistency(big, reference="c1"),
            f"first {small_n}": consistency(
                {"a100": dbs["a100"], "c100": dbs["c100"]}, reference="c100"
            ),
        }
        report["targets"] = evaluate_targets(report)
        report["levers_table"] = evaluate_levers(report)
        report["config"]["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        report["config"]["reused_steps"] = steps.reused
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
