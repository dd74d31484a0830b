"""The DuckLake warehouse against the DuckDB file, measured (deploy/DUCKLAKE.md, README).

Starts its own Postgres on loopback (mlruns_assets_tests.support.postgres) and, in the
``ducklake`` extra's environment (``.ci/ducklake`` builds it: .venv-ducklake):

- ``extract``: the demo store (12 classification + 2 imputation runs) extracted into a DuckDB
  file and into a DuckLake catalog (data in a local folder), ``--repeat`` times each, alternating;
- ``writers``: two processes each replacing ``--transactions`` runs that already have rows in
  one shared table (the case DuckLake refuses as a write conflict) through the project's
  ``PartitionWriter``: conflicts retried, seconds;
- ``compaction``: the catalog's data files before and after ``PartitionWriter.compact``.

    .venv-ducklake/bin/python benchmarks/ducklake_backend.py [--repeat 2] [--transactions 25]

Prints one JSON line (also written to benchmarks/results/ducklake.json).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mlruns_assets.demo.store import write_demo_store  # noqa: E402
from mlruns_assets.warehouse.duckdb_writer import DuckDBWarehouse  # noqa: E402
from mlruns_assets.warehouse.tables import TableSpec  # noqa: E402
from mlruns_assets_tests.support.cli import run_cli  # noqa: E402
from mlruns_assets_tests.support.postgres import loopback_postgres  # noqa: E402

SPEC = TableSpec(
    "points",
    pa.schema([pa.field("run_id", pa.string(), False), pa.field("v", pa.int64(), False)]),
    "benchmark rows",
)
ROWS = 2000


def _rows(run_id: str) -> pa.Table:
    return pa.table({"run_id": [run_id] * ROWS, "v": list(range(ROWS))}, schema=SPEC.schema)


def _writer(warehouse: str, runs: list[str], results: Any) -> None:
    lake = DuckDBWarehouse(database="", warehouse=warehouse, compact_every_partitions=0)
    with lake.partition_writer() as writer:
        for run_id in runs:
            writer.commit("bench", run_id, {SPEC: _rows(run_id)})
        results.put(writer.conflicts_retried)


def _extract_seconds(args: list[str]) -> float:
    started = time.perf_counter()
    code, output = run_cli(*args)
    if code != 0:
        raise SystemExit(output[-3000:])
    return round(time.perf_counter() - started, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--transactions", type=int, default=25, help="per writer")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ducklake-bench-"))
    report: dict[str, Any] = {"load_before": os.getloadavg()[0]}
    with loopback_postgres() as postgres:
        store = write_demo_store(work / "store")
        common = ["--tracking-uri", store.tracking_uri, "--subject-map",
                  str(store.subject_map_path)]  # fmt: skip
        file_s, lake_s = [], []
        for k in range(args.repeat):
            db = ["--db", str(work / f"r{k}.duckdb"), "--dagster-home", str(work / f"hf{k}")]
            file_s.append(_extract_seconds(["extract", *common, *db]))
            lake = postgres.warehouse(f"extract{k}", work / f"lake{k}")
            home = ["--dagster-home", str(work / f"hl{k}")]
            lake_s.append(_extract_seconds(["extract", *common, "--warehouse", lake, *home]))
        report["extract_seconds"] = {"duckdb_file": file_s, "ducklake": lake_s}

        warehouse = postgres.warehouse("writers", work / "writers")
        runs = [[f"w{w}-{k}" for k in range(args.transactions)] for w in range(2)]
        _writer(warehouse, runs[0] + runs[1], mp.Queue())  # every run has rows already
        results: Any = mp.Queue()
        started = time.perf_counter()
        procs = [mp.Process(target=_writer, args=(warehouse, r, results)) for r in runs]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        report["writers"] = {
            "writers": 2,
            "transactions_each": args.transactions,
            "rows_each": ROWS,
            "conflicts_retried": sorted(results.get() for _ in procs),
            "seconds": round(time.perf_counter() - started, 1),
            "exit_codes": [p.exitcode for p in procs],
        }
        lake = DuckDBWarehouse(database="", warehouse=warehouse)
        with lake.partition_writer() as writer:
            before_after = writer.compact()
        report["compaction_data_files"] = before_after
    shutil.rmtree(work, ignore_errors=True)
    report["load_after"] = os.getloadavg()[0]
    line = json.dumps(report)
    print(line)
    out = Path(__file__).resolve().parent / "results" / "ducklake.json"
    out.write_text(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
