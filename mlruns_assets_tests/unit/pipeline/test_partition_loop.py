"""The per-partition loop without Dagster: each partition commits or fails on its own, in order,
and the outcome says which."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from mlruns_assets.demo.store import DemoStore, write_demo_store
from mlruns_assets.pipeline.partition_loop import (
    PartitionCommitted,
    PartitionFailed,
    extract_partitions,
)
from mlruns_assets.pipeline.run_extraction import ExtractionSettings
from mlruns_assets.runtime.guardrails import LowDiskSpace
from mlruns_assets.runtime.progress import ExtractionProgress
from mlruns_assets.runtime.settings import Kind
from mlruns_assets.source.tracking import TrackingStore
from mlruns_assets.transform.subjects import load_subject_map
from mlruns_assets.warehouse.duckdb_writer import DuckDBWarehouse


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    root = tmp_path_factory.mktemp("loop")
    return write_demo_store(root / "store", backend="sqlite", runs=2, bootstraps=20)


def test_loop_commits_each_partition_and_fails_only_the_bad_one(
    demo: DemoStore, tmp_path: Path
) -> None:
    store = TrackingStore(demo.tracking_uri)
    (experiment,) = store.experiments(["Classification"])
    warehouse = DuckDBWarehouse(database=str(tmp_path / "r.duckdb"))
    lines: list[str] = []
    progress = ExtractionProgress(total=3, emit=lines.append)
    settings = ExtractionSettings(
        kind=Kind.CLASSIFICATION,
        subject_map=load_subject_map(demo.subject_map_path),
        heartbeat=progress.heartbeat,
    )
    keys = [demo.good_run_ids[0], "0" * 32, demo.good_run_ids[1]]
    with warehouse.partition_writer() as writer:
        outcomes = list(
            extract_partitions(
                store,
                writer,
                experiment,
                keys,
                settings,
                progress,
                database=Path(warehouse.database),
                min_free_disk_bytes=0,
            )
        )
    assert [o.key for o in outcomes] == keys
    first, missing, last = outcomes
    assert isinstance(first, PartitionCommitted) and isinstance(last, PartitionCommitted)
    assert first.rows["essential_metrics"] == 1 and first.rows["runs"] == 1
    assert first.extraction.summary["auroc"] is not None
    assert isinstance(missing, PartitionFailed)
    assert missing.cause == f"run {'0' * 32}: not found in experiment 'Classification'"
    with duckdb.connect(warehouse.database, read_only=True) as conn:
        committed = conn.execute("SELECT run_id FROM classification.runs ORDER BY 1").fetchall()
        codes = conn.execute(
            "SELECT count(*) FROM classification.predictions WHERE subject_code LIKE 'PLR%'"
        ).fetchone()
    assert sorted(r[0] for r in committed) == sorted(demo.good_run_ids)
    assert codes == (0,)
    assert progress.done == 3 and progress.failed == 1
    assert any(f"FAILED {'0' * 32}" in line for line in lines)


def test_loop_refuses_to_start_without_free_disk(demo: DemoStore, tmp_path: Path) -> None:
    store = TrackingStore(demo.tracking_uri)
    (experiment,) = store.experiments(["Classification"])
    warehouse = DuckDBWarehouse(database=str(tmp_path / "r.duckdb"))
    progress = ExtractionProgress(total=1, emit=lambda _: None)
    with warehouse.partition_writer() as writer, pytest.raises(LowDiskSpace):
        next(
            extract_partitions(
                store,
                writer,
                experiment,
                demo.good_run_ids[:1],
                ExtractionSettings(kind=Kind.CLASSIFICATION),
                progress,
                database=Path(warehouse.database),
                min_free_disk_bytes=10**18,
            )
        )
    assert not Path(warehouse.database).exists()
