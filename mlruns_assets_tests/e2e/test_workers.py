"""``extract --workers 2``: worker processes read the runs, and the database holds exactly the
rows one process writes."""

from __future__ import annotations

from pathlib import Path

from mlruns_assets.demo.store import write_demo_store
from mlruns_assets.runtime.settings import MIN_PARTITIONS_FOR_WORKERS
from mlruns_assets_tests.support.cli import run_extract
from mlruns_assets_tests.support.golden import table_fingerprints


def test_two_workers_write_the_rows_of_one_process(tmp_path: Path) -> None:
    store = write_demo_store(
        tmp_path / "store", runs=MIN_PARTITIONS_FOR_WORKERS + 2, bootstraps=5, imputation_runs=1
    )
    args = ("--subject-map", str(store.subject_map_path))
    databases = []
    for workers in (1, 2):
        database = tmp_path / f"workers{workers}.duckdb"
        done = run_extract(
            store, database, tmp_path / f"home{workers}", "--workers", str(workers), *args
        )
        assert done.exit_code == 0, done.output
        summary = next(line for line in done.output.splitlines() if line.startswith("materialized"))
        assert summary.startswith(f"materialized {MIN_PARTITIONS_FOR_WORKERS + 3}, ")
        assert summary.endswith(" (2 worker processes)") == (workers == 2), summary
        databases.append(database)
    assert table_fingerprints(databases[0]) == table_fingerprints(databases[1])
