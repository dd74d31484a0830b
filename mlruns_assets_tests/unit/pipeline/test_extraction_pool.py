"""Worker processes read and transform runs; the results, the failures and their order are the
same as in one process, and a worker that dies fails only the runs it held."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from mlruns_assets.pipeline import extraction_pool
from mlruns_assets.pipeline.extraction_pool import (
    ExtractedRun,
    ExtractionPool,
    extracted_in_order,
    shared_pool,
    shutdown_shared_pool,
    start_shared_pool,
    step_pool,
)
from mlruns_assets.pipeline.partition_loop import (
    PartitionCommitted,
    PartitionFailed,
    extract_partitions,
)
from mlruns_assets.pipeline.run_extraction import ExtractionSettings, RunExtraction
from mlruns_assets.runtime.progress import ExtractionProgress
from mlruns_assets.runtime.settings import Kind
from mlruns_assets.source.tracking import ExperimentRef, TrackingStore
from mlruns_assets.transform.subjects import load_subject_map
from mlruns_assets.warehouse.duckdb_writer import DuckDBWarehouse
from mlruns_assets_tests.support.bad_runs import BadDemoStore
from mlruns_assets_tests.support.cli import Extracted
from mlruns_assets_tests.support.golden import table_fingerprints


@pytest.fixture(scope="module")
def pool(bad_store_extracted: Extracted[BadDemoStore]) -> Iterator[ExtractionPool]:
    store = TrackingStore(bad_store_extracted.store.tracking_uri)
    pool = ExtractionPool(store.client.tracking_uri, workers=2)
    yield pool
    pool.shutdown()


def _setup(
    demo: BadDemoStore,
) -> tuple[TrackingStore, ExperimentRef, ExtractionSettings, list[str]]:
    store = TrackingStore(demo.tracking_uri)
    (experiment,) = store.experiments(["Classification"])
    settings = ExtractionSettings(
        kind=Kind.CLASSIFICATION, subject_map=load_subject_map(demo.subject_map_path)
    )
    # Good and bad runs interleaved, and a run id the experiment does not have.
    keys = [*demo.good_run_ids[:3], *demo.bad_run_ids, "0" * 32, *demo.good_run_ids[3:]]
    return store, experiment, settings, keys


def _comparable(item: ExtractedRun) -> object:
    if isinstance(item.result, Exception):
        return (item.key, type(item.result).__name__, str(item.result))
    extraction: RunExtraction = item.result
    tables = {  # repr: NaN (a logged metric value) equals itself only as text
        spec.name: repr(
            table.drop_columns(
                [c for c in ("extracted_at",) if c in table.column_names]
            ).to_pylist()
        )
        for spec, table in extraction.tables.items()
        if isinstance(table, pa.Table)
    }
    return (item.key, tables, extraction.notes)


def _wait_ready(pool: ExtractionPool) -> None:
    pool._started.result(timeout=120)


# Evaluated in a worker process: which of the heavy libraries it has imported.
HEAVY_IMPORTS = (
    "sorted({m.split('.')[0] for m in __import__('sys').modules} & {'mlflow', 'dagster'})"
)


def test_workers_give_the_same_results_failures_and_order_as_one_process(
    bad_store_extracted: Extracted[BadDemoStore], pool: ExtractionPool
) -> None:
    store, experiment, settings, keys = _setup(bad_store_extracted.store)
    progress = ExtractionProgress(total=len(keys), emit=lambda _line: None)
    serial = list(
        extracted_in_order(store, experiment, keys, settings, progress, None, lambda: False)
    )
    _wait_ready(pool)
    pooled = list(
        extracted_in_order(store, experiment, keys, settings, progress, pool, lambda: False)
    )
    assert [i.key for i in pooled] == keys
    assert [_comparable(i) for i in pooled] == [_comparable(i) for i in serial]
    failed = {i.key for i in pooled if isinstance(i.result, Exception)}
    assert failed == {*bad_store_extracted.store.bad_run_ids, "0" * 32}
    # The workers did the reading: their peak RSS came back with each extraction.
    assert all(i.worker_peak_rss > 0 for i in pooled if i.key not in failed)


def test_the_loop_with_workers_writes_the_rows_of_one_process(
    bad_store_extracted: Extracted[BadDemoStore], pool: ExtractionPool, tmp_path: Path
) -> None:
    store, experiment, settings, keys = _setup(bad_store_extracted.store)
    databases = []
    for name, use in (("serial", None), ("pooled", pool)):
        _wait_ready(pool)
        warehouse = DuckDBWarehouse(database=str(tmp_path / f"{name}.duckdb"))
        progress = ExtractionProgress(total=len(keys), emit=lambda _line: None)
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
                    pool=use,
                )
            )
        committed = [o.key for o in outcomes if isinstance(o, PartitionCommitted)]
        assert committed == [k for k in keys if k in bad_store_extracted.store.good_run_ids]
        assert all(isinstance(o, PartitionFailed) for o in outcomes if o.key not in committed)
        databases.append(Path(warehouse.database))
    assert table_fingerprints(databases[0]) == table_fingerprints(databases[1])


def test_a_stop_hands_out_no_more_work(
    bad_store_extracted: Extracted[BadDemoStore], pool: ExtractionPool
) -> None:
    store, experiment, settings, _ = _setup(bad_store_extracted.store)
    keys = bad_store_extracted.store.good_run_ids
    progress = ExtractionProgress(total=len(keys), emit=lambda _line: None)
    _wait_ready(pool)
    taken: list[str] = []
    for item in extracted_in_order(
        store, experiment, keys, settings, progress, pool, lambda: len(taken) >= 2
    ):
        taken.append(item.key)
    assert taken == keys[:2]


def test_a_killed_worker_fails_the_runs_it_held_and_the_rest_go_on(
    bad_store_extracted: Extracted[BadDemoStore],
) -> None:
    store, experiment, settings, _ = _setup(bad_store_extracted.store)
    keys = bad_store_extracted.store.good_run_ids * 4  # more than the workers hold at once
    progress = ExtractionProgress(total=len(keys), emit=lambda _line: None)
    doomed = ExtractionPool(store.client.tracking_uri, workers=2)
    try:
        _wait_ready(doomed)
        results = []
        for item in extracted_in_order(
            store, experiment, keys, settings, progress, doomed, lambda: False
        ):
            if not results:  # the others are in the workers' hands now: kill one
                worker = next(iter(doomed._executor._processes))
                os.kill(worker, signal.SIGKILL)
            results.append(item)
    finally:
        doomed.shutdown()
    assert [i.key for i in results] == keys
    died = [i for i in results if isinstance(i.result, Exception)]
    assert died and all("worker process died" in str(i.result) for i in died)
    # Those handed out after the pool broke were extracted in this process.
    assert not isinstance(results[-1].result, Exception)


def test_a_pool_broken_before_a_run_is_handed_out_extracts_the_runs_here(
    bad_store_extracted: Extracted[BadDemoStore],
) -> None:
    store, experiment, settings, _ = _setup(bad_store_extracted.store)
    keys = bad_store_extracted.store.good_run_ids
    progress = ExtractionProgress(total=len(keys), emit=lambda _line: None)
    doomed = ExtractionPool(store.client.tracking_uri, workers=2)
    try:
        _wait_ready(doomed)
        os.kill(next(iter(doomed._executor._processes)), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not doomed._executor._broken:  # what a submit would now raise on
            assert time.monotonic() < deadline, "the pool never noticed its dead worker"
            time.sleep(0.05)
        results = list(
            extracted_in_order(store, experiment, keys, settings, progress, doomed, lambda: False)
        )
    finally:
        doomed.shutdown()
    assert [i.key for i in results] == keys
    assert not [i.result for i in results if isinstance(i.result, Exception)]


def test_workers_read_local_runs_without_importing_mlflow_or_dagster(
    bad_store_extracted: Extracted[BadDemoStore],
) -> None:
    store, experiment, settings, keys = _setup(bad_store_extracted.store)
    pool = ExtractionPool(store.client.tracking_uri, workers=2)
    try:
        _wait_ready(pool)
        progress = ExtractionProgress(total=len(keys), emit=lambda _line: None)
        good = [k for k in keys if k in bad_store_extracted.store.good_run_ids]
        pooled = list(
            extracted_in_order(store, experiment, good, settings, progress, pool, lambda: False)
        )
        assert all(i.worker_peak_rss > 0 for i in pooled)  # extracted by the workers
        probes = [pool._executor.submit(eval, HEAVY_IMPORTS) for _ in range(2 * pool.workers)]
        assert [p.result(timeout=60) for p in probes] == [[]] * len(probes)
    finally:
        pool.shutdown()


def test_a_daemonic_process_extracts_in_its_own_thread(
    bad_store_extracted: Extracted[BadDemoStore],
) -> None:
    """A Celery pool process is daemonic and may not start children: no pool, no failure."""
    store, _experiment, _settings, _keys = _setup(bad_store_extracted.store)
    context = multiprocessing.get_context("fork")
    answers = context.Queue()

    def ask() -> None:
        try:
            pool = shared_pool(store, Kind.CLASSIFICATION, workers=2, partitions=1000)
            answers.put(repr(pool))
        except BaseException as exc:
            answers.put(repr(exc))

    child = context.Process(target=ask, daemon=True)
    child.start()
    child.join(timeout=60)
    assert answers.get(timeout=10) == "None"


# A spawned child (as Dagster's code server starts a run) that starts workers and returns
# without stopping them; the parent then lists the worker processes still alive.
FORGETFUL_CHILD = """
import multiprocessing, sys
import psutil


def start_and_return(uri, answers):
    from mlruns_assets.pipeline.extraction_pool import shared_pool
    from mlruns_assets.runtime.settings import Kind
    from mlruns_assets.source.tracking import TrackingStore

    pool = shared_pool(TrackingStore(uri), Kind.CLASSIFICATION, workers=2, partitions=1000)
    pool._started.result(timeout=120)
    answers.put(sorted(pool._executor._processes))


if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    answers = context.SimpleQueue()
    child = context.Process(target=start_and_return, args=(sys.argv[1], answers))
    child.start()
    child.join(timeout=60)
    exitcode = child.exitcode  # None: still alive
    workers = answers.get()
    alive = [p for p in workers if psutil.pid_exists(p)]
    for pid in [child.pid, *alive] if exitcode is None else []:
        psutil.Process(pid).kill()
    print(exitcode, len(workers), alive)
"""


def test_a_process_that_started_workers_and_forgot_them_still_exits(
    bad_store_extracted: Extracted[BadDemoStore], tmp_path: Path
) -> None:
    """A Dagster run started by the code server is a multiprocessing child, whose exit joins
    every child process first: idle workers left running would keep it alive for ever."""
    script = tmp_path / "forgetful.py"
    script.write_text(FORGETFUL_CHILD)
    done = subprocess.run(
        [sys.executable, str(script), bad_store_extracted.store.tracking_uri],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    exitcode, started, alive = done.stdout.split("\n")[0].split(" ", 2)
    assert (exitcode, alive) == ("0", "[]") and int(started) >= 1, done.stderr[-2000:]


def test_a_step_stops_the_workers_it_started_and_leaves_the_commands(
    bad_store_extracted: Extracted[BadDemoStore],
) -> None:
    store, _experiment, _settings, _keys = _setup(bad_store_extracted.store)
    try:
        with step_pool(store, Kind.CLASSIFICATION, 2, 1000) as own:
            assert own is not None and extraction_pool._shared is own
        assert extraction_pool._shared is None and own._executor._shutdown_thread
        command = start_shared_pool(store, workers=2, partitions=1000)
        with step_pool(store, Kind.CLASSIFICATION, 2, 1000) as used:
            assert used is command
        assert extraction_pool._shared is command and not command._executor._shutdown_thread
    finally:
        shutdown_shared_pool()
