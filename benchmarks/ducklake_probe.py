"""DuckLake feasibility probe (deploy/DUCKLAKE.md): concurrent writers, compaction, export.

Needs the ``ducklake`` extra's environment (DuckDB 1.5.5 and the extension wheels:
``uv sync --frozen --extra ducklake``) and a Postgres database for the catalog, e.g. one started
by ``deploy/loopback.py``. Loads each extension from its wheel's file, never from the network.

    uv run --frozen --extra ducklake python benchmarks/ducklake_probe.py \\
        --catalog "dbname=lake host=127.0.0.1 port=5432 user=postgres" --data /tmp/lake

Prints: writers x transactions committed and the conflict retries they needed, Parquet files
before and after compaction, and the rows of a plain DuckDB file exported with
``COPY FROM DATABASE``.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import duckdb

EXTENSIONS = (("duckdb_extension_postgres_scanner", "postgres_scanner"),
              ("duckdb_extension_ducklake", "ducklake"))  # fmt: skip


def extension_file(package: str, name: str) -> Path:
    """The extension file a ``duckdb-extension-*`` wheel ships for the running DuckDB."""
    folder = Path(importlib.import_module(package).__file__ or "").parent
    return folder / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"


def connect(catalog: str, data: str) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(config={"threads": 1})
    for package, name in EXTENSIONS:
        conn.execute(f"LOAD '{extension_file(package, name)}'")
    conn.execute(f"ATTACH 'ducklake:postgres:{catalog}' AS lake (DATA_PATH '{data}')")
    conn.execute("USE lake")
    return conn


def writer(index: int, transactions: int, rows: int, args: Any, results: Any) -> None:
    """Replace one run's rows per transaction (delete + insert), retrying on conflicts."""
    conn = connect(args.catalog, args.data)
    retries = 0
    for k in range(transactions):
        run_id = f"w{index}-{k}"
        while True:
            try:
                conn.begin()
                conn.execute("DELETE FROM s.runs WHERE run_id = ?", [run_id])
                conn.execute(f"INSERT INTO s.runs SELECT ?, range FROM range({rows})", [run_id])
                conn.commit()
                break
            except duckdb.Error:
                conn.rollback()
                retries += 1
                time.sleep(0.05)
    results.put(retries)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--catalog", required=True, help="libpq connection string")
    parser.add_argument("--data", required=True, help="data folder or s3:// prefix")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--transactions", type=int, default=25)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--export", type=Path, default=Path("ducklake_export.duckdb"))
    args = parser.parse_args()
    conn = connect(args.catalog, args.data)
    conn.execute("CREATE SCHEMA IF NOT EXISTS s")
    conn.execute("CREATE OR REPLACE TABLE s.runs (run_id VARCHAR, v BIGINT)")
    conn.close()
    results: Any = mp.Queue()
    started = time.perf_counter()
    procs = [
        mp.Process(target=writer, args=(i, args.transactions, args.rows, args, results))
        for i in range(args.writers)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    retries = [results.get() for _ in procs]
    elapsed = time.perf_counter() - started
    done = f"{args.writers} x {args.transactions} transactions in {elapsed:.1f} s"
    print(f"{done}, retries {retries}")
    conn = connect(args.catalog, args.data)
    files = "SELECT count(*) FROM ducklake_list_files('lake', 'runs', schema => 's')"
    print("data files before compaction:", conn.execute(files).fetchone())
    conn.execute("CALL ducklake_merge_adjacent_files('lake')")
    conn.execute("CALL ducklake_expire_snapshots('lake', older_than => now())")
    conn.execute("CALL ducklake_cleanup_old_files('lake', cleanup_all => true)")
    print("data files after compaction:", conn.execute(files).fetchone())
    args.export.unlink(missing_ok=True)
    conn.execute(f"ATTACH '{args.export}' AS out")
    conn.execute("COPY FROM DATABASE lake TO out")
    print("rows exported:", conn.execute("SELECT count(*) FROM out.s.runs").fetchone())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
