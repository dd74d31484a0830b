"""Signals benchmark (issue 5): one seed-shaped imputation store, extracted three ways.

    uv run python benchmarks/signals_bench.py --runs 20 --subjects 507 --length 1981 \
        --out benchmarks/results/signals.json

Variants, each in a fresh child process on a fresh database, side by side on the same store:
  (a) row-by-row  REFERENCE ONLY, the seed's "fixed" exporter: per pickle, rows built with
                  ``signal.tolist()`` and written with ``conn.executemany(...)``
  (b) floor       the same pickle reads, then one Arrow append per split (a transaction and a
                  connection per run, as the warehouse), no Dagster
  (c) extract     ``mlruns-assets extract`` (Dagster, per-partition commits and checks)
plus (c) on stores restricted to fewer runs (--scaling) and on a same-shaped store of 2-subject
pickles (the extract's fixed cost, with next to no signal data).

Peak RSS: ``measure.run_measured`` (a tiny ``python -S`` launcher forks and execs each child and
reads its ``ru_maxrss`` from ``wait4``; a child spawned straight from this process would inherit
this process's high-water mark). Each variant's import baseline is the peak of a child that
only imports what the variant imports.
Both pickle reads use the allow-list unpickler: the variants differ in how rows are written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow

# Imported by every child too, so the import baselines include them.
from measure import run_measured
from mlflow.entities import Run

from mlruns_assets.demo.store import write_demo_store
from mlruns_assets.runtime.guardrails import MemoryGuard
from mlruns_assets.source.artifacts import load_imputation_artifact
from mlruns_assets.source.tracking import TrackingStore

MB = 1e6
# What a run writes into --workdir (removed before the next run there).
WRITTEN = ("store", "store_*", "tiny", "*.duckdb", "*.duckdb.wal", "*.dagster")
CLI = str(Path(sys.executable).parent / "mlruns-assets")  # the installed console script
TABLE_DDL = """CREATE TABLE IF NOT EXISTS preprocessed_signals (
  run_id VARCHAR NOT NULL, imputation_method VARCHAR, outlier_method VARCHAR,
  split VARCHAR NOT NULL, subject_code VARCHAR NOT NULL,
  time_vector DOUBLE[] NOT NULL, signal DOUBLE[] NOT NULL)"""


def measure(command: list[str]) -> dict[str, Any]:
    """Wall time, CPU time and peak RSS of one command run to completion."""
    result = run_measured(command).check()
    return {
        "wall_s": result.wall_s,
        "cpu_s": result.cpu_s,
        "peak_rss": result.peak_rss_bytes,
        "load_avg": [round(result.load_before, 2), round(result.load_after, 2)],
    }


# --------------------------------------------------------------------------- workers (children)
def _runs(tracking_uri: str) -> tuple[TrackingStore, Iterator[Run]]:
    store = TrackingStore(tracking_uri)
    experiment = store.experiments(["Imputation"])[0]
    return store, store.iter_runs(experiment.experiment_id)


def _load(store: TrackingStore, run: Run) -> tuple[Any, str]:
    with store.artifacts(run) as artifacts:
        return load_imputation_artifact(artifacts, MemoryGuard(None))


def worker_row_by_row(args: argparse.Namespace) -> None:
    """(a) REFERENCE ONLY: the seed's "fixed" streaming exporter, as its incident report gives
    it: per pickle, rows built with ``.tolist()``, ``conn.executemany(...)``, ``del`` and
    ``gc.collect()``. (DuckDB runs ``executemany`` row by row in autocommit; the same rows as
    ``execute`` calls inside one transaction take ~2.5x less, measured here.)"""
    import gc

    import duckdb
    import numpy as np

    from mlruns_assets.transform.subjects import load_subject_map

    if args.imports_only:
        return
    mapping = load_subject_map(args.subject_map) if args.subject_map else {}
    store, runs = _runs(args.tracking_uri)
    conn = duckdb.connect(args.db)
    conn.execute(TABLE_DDL)
    for run in runs:
        data, _ = _load(store, run)
        params = run.data.params
        rows = []  # bounded: one pickle's rows, the seed exporter's own batch
        for split, df in data["source_data"]["df"].items():
            codes = np.asarray(df["metadata"]["subject_code"])[:, 0]
            time_ = df["time"]["time"]
            mean = data["model_artifacts"]["imputation"][split]["imputation_dict"]["imputation"]
            signal = mean["mean"][:, :, 0]
            for i, code in enumerate(codes):
                rows.append(
                    (
                        run.info.run_id,
                        params.get("imputation_source"),
                        params.get("anomaly_source"),
                        split,
                        mapping.get(str(code), str(code)),
                        time_[i].tolist(),
                        signal[i].tolist(),
                    )
                )
        conn.executemany("INSERT INTO preprocessed_signals VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        del data, rows
        gc.collect()
    conn.close()


def worker_floor(args: argparse.Namespace) -> None:
    """(b) The project's pickle reads and Arrow tables, one append per split, no Dagster."""
    import duckdb

    from mlruns_assets.transform.signals import imputation_methods, read_signals, signal_tables
    from mlruns_assets.transform.subjects import load_subject_map
    from mlruns_assets.warehouse.duckdb_writer import BULK_SETTINGS, STORAGE_SETTINGS, insert_chunks

    if args.imports_only:
        return
    mapping = load_subject_map(args.subject_map) if args.subject_map else None
    store, runs = _runs(args.tracking_uri)
    with duckdb.connect(args.db) as conn:
        conn.execute(TABLE_DDL)
    for run in runs:
        data, path = _load(store, run)
        splits = read_signals(data, path)
        del data
        run_id, methods = run.info.run_id, imputation_methods(run)
        # A connection per run, as the warehouse does: DuckDB keeps what it read until closed.
        with duckdb.connect(args.db, config={**STORAGE_SETTINGS, **BULK_SETTINGS}) as conn:
            conn.begin()
            conn.execute("DELETE FROM preprocessed_signals WHERE run_id = ?", [run_id])
            for table in signal_tables(splits, run_id, methods, mapping, path, 10**9):
                insert_chunks(conn, "preprocessed_signals", [table])
            conn.commit()


# --------------------------------------------------------------------------- the parent
def _store_stats(path: Path, tracking_uri: str) -> dict[str, Any]:
    pickles = sorted(path.rglob("imputation_*.pickle"))
    return {
        "tracking_uri": tracking_uri,
        "pickles": len(pickles),
        "largest_pickle_bytes": max(p.stat().st_size for p in pickles),
        "total_pickle_bytes": sum(p.stat().st_size for p in pickles),
    }


def restricted_store(source: Path, target: Path, keep: int) -> str:
    """A copy of the store's run database in which only the first ``keep`` runs are active (the
    others are deleted in MLflow, so extraction skips them); artifacts are shared."""
    target.mkdir(parents=True)
    shutil.copy(source / "mlflow.db", target / "mlflow.db")
    uri = f"sqlite:///{target / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("Imputation")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    for run in runs[keep:]:
        client.delete_run(run.info.run_id)
    return uri


def extract_command(uri: str, db: Path, subject_map: Path) -> list[str]:
    return [
        CLI, "extract", "--tracking-uri", uri,
        "--db", str(db), "--dagster-home", str(db.parent / f"{db.stem}.dagster"),
        "--experiment", "Imputation", "--subject-map", str(subject_map),
    ]  # fmt: skip


def _row(name: str, m: dict[str, Any], baseline: int, rows: int, stats: dict, t: int) -> dict:
    above = m["peak_rss"] - baseline
    signal_bytes = rows * t * 8 * 2  # signal + time vector values written
    return {
        "variant": name,
        "wall_s": round(m["wall_s"], 2),
        "cpu_s": round(m["cpu_s"], 2),
        "rows": rows,
        "signal_mb": round(signal_bytes / MB, 1),
        "mb_per_s": round(signal_bytes / MB / m["wall_s"], 2),
        "peak_rss_mb": round(m["peak_rss"] / MB, 1),
        "import_baseline_mb": round(baseline / MB, 1),
        "above_baseline_mb": round(above / MB, 1),
        "largest_pickle_mb": round(stats["largest_pickle_bytes"] / MB, 1),
        "peak_over_largest_pickle": round(above / stats["largest_pickle_bytes"], 2),
        "load_avg": m["load_avg"],
    }


def _count(db: Path, schema: str) -> int:
    import duckdb

    with duckdb.connect(str(db), read_only=True) as conn:
        found = conn.execute(f"SELECT count(*) FROM {schema}.preprocessed_signals").fetchone()
    return int(found[0]) if found else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="imputation runs (at most 20)")
    parser.add_argument("--subjects", type=int, default=507)
    parser.add_argument("--length", type=int, default=1981)
    parser.add_argument("--scaling", default="10", help="comma-separated run counts for (c)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/signals.json"))
    parser.add_argument(
        "--workdir",
        type=Path,
        help="write the stores here, replacing what an earlier run wrote (default: temporary)",
    )
    parser.add_argument("--worker", choices=["row_by_row", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--tracking-uri", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--subject-map", help=argparse.SUPPRESS)
    parser.add_argument("--imports-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        {"row_by_row": worker_row_by_row, "floor": worker_floor}[args.worker](args)
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="signals-bench-"))
    if args.workdir is not None:  # every variant on a fresh store and fresh databases
        work.mkdir(parents=True, exist_ok=True)
        for written in WRITTEN:  # what an earlier run wrote there, nothing else
            for path in work.glob(written):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
    try:
        report = run_benchmark(args, work.resolve())
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(markdown(report))
    print(f"\nreport: {args.out}")


def run_benchmark(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    started = time.perf_counter()
    shape = {"runs": 0, "imputation_runs": args.runs, "signal_length": args.length}
    store = write_demo_store(work / "store", imputation_subjects=args.subjects, **shape)
    written = time.perf_counter() - started
    stats = _store_stats(work / "store", store.tracking_uri)
    me = [sys.executable, str(Path(__file__).resolve())]
    common = ["--tracking-uri", store.tracking_uri, "--subject-map", str(store.subject_map_path)]
    rows = []  # bounded: one row per variant

    def add(label: str, command: list[str], baseline: int, db: Path, schema: str) -> None:
        m = measure(command)
        rows.append(_row(label, m, baseline, _count(db, schema), stats, args.length))

    for name, label in (("row_by_row", "(a) row-by-row [reference]"), ("floor", "(b) floor")):
        base = measure([*me, "--worker", name, *common, "--db", "x", "--imports-only"])
        db = work / f"{name}.duckdb"
        add(label, [*me, "--worker", name, *common, "--db", str(db)], base["peak_rss"], db, "main")
    imports = ["-c", "import mlruns_assets.cli.main, mlruns_assets.cli.extract"]
    base_extract = measure([sys.executable, *imports])["peak_rss"]
    db = work / "extract.duckdb"
    command = extract_command(store.tracking_uri, db, store.subject_map_path)
    add(f"(c) extract, {args.runs} runs", command, base_extract, db, "imputation")
    for n in [int(v) for v in args.scaling.split(",") if v]:
        uri, db = restricted_store(work / "store", work / f"store_{n}", n), work / f"x{n}.duckdb"
        command = extract_command(uri, db, store.subject_map_path)
        add(f"(c) extract, {n} runs", command, base_extract, db, "imputation")
    # The same extract with 2 subjects per pickle: its fixed cost, with next to no signal data.
    tiny = write_demo_store(work / "tiny", imputation_subjects=2, **shape)
    db = work / "tiny.duckdb"
    command = extract_command(tiny.tracking_uri, db, tiny.subject_map_path)
    add(f"(c) extract, {args.runs} runs x 2 subjects", command, base_extract, db, "imputation")
    fixed, full = rows[-1]["peak_rss_mb"], rows[2]["peak_rss_mb"]
    a_over_c = rows[0]["wall_s"] / rows[2]["wall_s"] if rows[2]["wall_s"] else None
    return {
        "targets": {
            "a_over_c": {
                "value": round(a_over_c, 2) if a_over_c else None,
                "target": ">= 10 (issue 13: (c) extract vs the seed's executemany exporter)",
            }
        },
        "config": {"runs": args.runs, "subjects": args.subjects, "length": args.length},
        "store": {**stats, "write_s": round(written, 1)},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "variants": rows,
        "extract_data_peak_mb": round(full - fixed, 1),
        "extract_data_peak_over_largest_pickle": round(
            (full - fixed) * MB / stats["largest_pickle_bytes"], 2
        ),
    }


def markdown(report: dict[str, Any]) -> str:
    cols = ["variant", "wall_s", "mb_per_s", "rows", "peak_rss_mb", "import_baseline_mb",
            "above_baseline_mb", "largest_pickle_mb", "peak_over_largest_pickle",
            "load_avg"]  # fmt: skip
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in report["variants"]]
    lines.append(
        f"\n(c) peak above the same extract on 2-subject pickles: "
        f"{report['extract_data_peak_mb']} MB = "
        f"{report['extract_data_peak_over_largest_pickle']} x the largest pickle"
    )
    for name, t in report.get("targets", {}).items():
        lines.append(f"\n{name}: {t['value']} (target {t['target']})")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
