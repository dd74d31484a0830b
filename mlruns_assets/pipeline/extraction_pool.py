"""Runs read and transformed in worker processes while one writer commits them (``--workers``).

Reading a run's pickle and computing its tables is most of a partition's CPU and needs no
database, so N worker processes do it while the step's own thread commits each run in its own
transaction, in order, and records it as it commits. Memory stays bounded: a worker holds one
run at a time and at most ``2 x workers`` finished runs wait for the writer.

Workers are forked from a fork server that imports ``pipeline.extraction_worker`` (NumPy,
PyArrow, the transforms; no MLflow, no Dagster) once, well under a second during which the step
extracts in its own thread. The parent hands each worker the run as plain data
(``RunRecord``) with its metric history; a worker opens the tracking store through MLflow only
for a run whose artifacts are not local files (``TrackingStore.reopened``). One pool serves
every step of a process (the headless command runs all its steps in-process).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.util
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass

from mlflow.entities import Run

from mlruns_assets.pipeline import extraction_worker
from mlruns_assets.pipeline.run_extraction import ExtractionSettings, RunExtraction, extract_run
from mlruns_assets.runtime.errors import ExtractionError
from mlruns_assets.runtime.guardrails import peak_rss, reset_peak_rss
from mlruns_assets.runtime.progress import ExtractionProgress
from mlruns_assets.runtime.settings import MIN_PARTITIONS_FOR_WORKERS, Kind
from mlruns_assets.source.partition_keys import run_id_of
from mlruns_assets.source.run_data import MetricPoints, RunRecord
from mlruns_assets.source.tracking import ExperimentRef, TrackingStore


class ExtractionPool:
    """``workers`` processes extracting runs of one tracking store."""

    def __init__(self, client_uri: str, workers: int, *, with_mlflow: bool = False) -> None:
        """``with_mlflow``: the workers will read through MLflow (a store whose metric
        histories the parent cannot read in bulk), so the fork server imports it once."""
        self.client_uri, self.workers = client_uri, workers
        context = multiprocessing.get_context("forkserver")
        # Forking the step's process is unsafe (Dagster's threads); the fork server is a fresh
        # interpreter that imports what a worker needs once.
        preload = [extraction_worker.__name__]
        context.set_forkserver_preload(
            [*preload, "mlruns_assets.source.tracking"] if with_mlflow else preload
        )
        self._executor = ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=extraction_worker.start_worker,
            initargs=(client_uri,),
        )
        # Done once a worker has started; until then the step extracts in its own thread
        # rather than wait.
        self._started = self._executor.submit(os.getpid)
        self.command_wide = False  # started for a whole command (``start_shared_pool``)
        # Not atexit: a multiprocessing child (Dagster's code server starts runs as such)
        # exits through multiprocessing's exit function, which joins every child process,
        # idle workers included, before atexit handlers run: it would wait for ever.
        # Finalizers of priority >= 0 run before that join, and at a normal exit too; one is
        # registered per pool, as a child process starts with an empty registry.
        self._at_exit = multiprocessing.util.Finalize(self, self.shutdown, exitpriority=10)

    @classmethod
    def for_store(cls, store: TrackingStore, workers: int) -> ExtractionPool:
        """A pool for ``store``'s runs; its workers import MLflow up front only when they will
        read each run's metric history themselves."""
        return cls(
            store.client.tracking_uri, workers, with_mlflow=not store.reads_histories_in_bulk
        )

    @property
    def ready(self) -> bool:
        return self._started.done() and self._started.exception() is None

    @property
    def in_flight(self) -> int:
        """How many finished or running extractions the writer may have waiting."""
        return 2 * self.workers

    def submit(
        self, run: Run, settings: ExtractionSettings, history: MetricPoints | None
    ) -> Future[tuple[RunExtraction, int]]:
        # The heartbeat reports to the step's log, which lives in this process.
        shipped = dataclasses.replace(settings, heartbeat=None)
        return self._executor.submit(
            extraction_worker.extract_in_worker, RunRecord.of(run), shipped, history
        )

    def shutdown(self) -> None:
        """Stop the workers: idle ones exit at once; one that does not within 5 s is killed.
        (``shutdown(wait=True)`` can hang on a pool whose worker was killed.)"""
        self._at_exit.cancel()
        processes = list((self._executor._processes or {}).values())
        self._executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)


def _may_start_processes() -> bool:
    """False in a daemonic process (a Celery pool process runs Dagster runs as one), which
    Python forbids to start children: its steps extract in their own thread."""
    return not multiprocessing.current_process().daemon


_shared: ExtractionPool | None = None
_shared_lock = threading.Lock()


def shared_pool(
    store: TrackingStore, kind: Kind, workers: int, partitions: int
) -> ExtractionPool | None:
    """The process's pool for ``store`` with ``workers`` processes, or None to extract in the
    step's own thread: one worker asked for, too few partitions for workers to pay, or
    imputation signals (read while they are inserted, so a worker could not hand them over)."""
    global _shared
    if workers < 2 or kind == Kind.IMPUTATION or not _may_start_processes():
        return None
    uri = store.client.tracking_uri
    with _shared_lock:
        if _shared is not None and (_shared.client_uri, _shared.workers) == (uri, workers):
            return _shared  # started for the whole command (``start_shared_pool``)
        if partitions < MIN_PARTITIONS_FOR_WORKERS:
            return None
        if _shared is not None:
            _shared.shutdown()
        _shared = ExtractionPool.for_store(store, workers)
        return _shared


def start_shared_pool(store: TrackingStore, workers: int, partitions: int) -> ExtractionPool | None:
    """Start the workers for a command's ``partitions`` (of kinds workers can read), however
    its steps divide them: they warm up while the first step starts in its own thread."""
    global _shared
    if workers < 2 or partitions < MIN_PARTITIONS_FOR_WORKERS or not _may_start_processes():
        return None
    with _shared_lock:
        if _shared is None:
            _shared = ExtractionPool.for_store(store, workers)
            _shared.command_wide = True
        return _shared


def shutdown_shared_pool(only: ExtractionPool | None = None) -> None:
    """Stop the workers (at the end of a command or of a step that started them; at exit
    otherwise); with ``only``, just when they are that pool's."""
    global _shared
    with _shared_lock:
        if _shared is not None and (only is None or _shared is only):
            _shared.shutdown()
            _shared = None


@contextmanager
def step_pool(
    store: TrackingStore, kind: Kind, workers: int, partitions: int
) -> Iterator[ExtractionPool | None]:
    """``shared_pool`` for one step: workers the step started stop when it ends (a Dagster
    run's process would otherwise keep them until it exits); the command's pool is left to
    the command (``start_shared_pool``)."""
    pool = shared_pool(store, kind, workers, partitions)
    try:
        yield pool
    finally:
        if pool is not None and not pool.command_wide:
            shutdown_shared_pool(only=pool)


# Runs whose metric histories are read in one query: few enough that a window of long
# histories stays small, many enough that the per-query cost is shared.
HISTORY_WINDOW = 16


@dataclass(frozen=True)
class ExtractedRun:
    """One partition's extraction, or why it failed; ``started`` is when it was handed out."""

    key: str
    run: Run | None
    started: float
    result: RunExtraction | Exception
    worker_peak_rss: int = 0


class _Histories:
    """Metric histories read a window of runs at a time, handed out once each."""

    def __init__(self, store: TrackingStore, keys: Sequence[str], runs: dict[str, Run]) -> None:
        self.store, self.keys, self.runs = store, keys, runs
        self._window: dict[str, MetricPoints] = {}

    def take(self, position: int, progress: ExtractionProgress) -> MetricPoints | None:
        key = self.keys[position]
        if position % HISTORY_WINDOW == 0:
            window = [self.runs[k] for k in self.keys[position : position + HISTORY_WINDOW]]
            self._window = _bulk_histories(self.store, window, progress)
        return self._window.pop(self.runs[key].info.run_id, None)


def _bulk_histories(
    store: TrackingStore, runs: list[Run], progress: ExtractionProgress
) -> dict[str, MetricPoints]:
    """The runs' metric histories in one read; empty when the store cannot (each run then
    reads its own, and so names its own failure)."""
    if not runs:
        return {}
    progress.heartbeat(f"reading the metric history of {len(runs)} runs")
    try:
        return store.metric_histories(runs) or {}
    except Exception:  # the per-run read names the run and the cause
        return {}


def _extracted_here(
    store: TrackingStore, run: Run, settings: ExtractionSettings, history: MetricPoints | None
) -> Future[tuple[RunExtraction, int]]:
    """The run extracted in this thread, as a finished future: it waits in line behind the
    work the broken pool held, so partitions still come out in order."""
    done: Future[tuple[RunExtraction, int]] = Future()
    reset_peak_rss()
    try:
        done.set_result((extract_run(store, run, settings, history), peak_rss()))
    except Exception as exc:  # fails this partition only, when its turn comes
        done.set_exception(exc)
    return done


def extracted_in_order(
    store: TrackingStore,
    experiment: ExperimentRef,
    keys: Sequence[str],
    settings: ExtractionSettings,
    progress: ExtractionProgress,
    pool: ExtractionPool | None,
    should_stop: Callable[[], bool],
) -> Iterator[ExtractedRun]:
    """Each partition's extraction, in the order of ``keys``: in this thread one at a time, or
    by the pool's workers ahead of the caller (at most ``pool.in_flight``). Stops handing out
    work once ``should_stop()``; work handed out and not yet taken is dropped."""
    run_ids = {key: run_id_of(key) for key in keys}
    by_id = store.runs_by_id(experiment.experiment_id, list(run_ids.values()))
    runs = {key: by_id[run_id] for key, run_id in run_ids.items() if run_id in by_id}
    histories = _Histories(store, [k for k in keys if k in runs], runs)
    known = 0  # position among the keys that have a run (the histories' order)

    def missing() -> LookupError:
        return LookupError(f"not found in experiment {experiment.name!r}")

    pending: deque[tuple[str, Run | None, float, Future[tuple[RunExtraction, int]] | Exception]]
    pending = deque()
    position = 0
    try:
        while position < len(keys) or pending:
            while position < len(keys) and not should_stop():
                pooled = pool is not None and pool.ready
                if not pooled and pending:  # a broken pool's work is taken first
                    break
                if pool is not None and pooled and len(pending) >= pool.in_flight:
                    break
                key = keys[position]
                position += 1
                run = runs.get(key)
                history = None
                if run is not None:
                    history = histories.take(known, progress)
                    known += 1
                started = time.monotonic()
                if pool is None or not pooled:
                    reset_peak_rss()
                    try:
                        if run is None:
                            raise missing()
                        result: RunExtraction | Exception = extract_run(
                            store, run, settings, history
                        )
                    except Exception as exc:  # fails this partition only
                        result = exc
                    yield ExtractedRun(key, run, started, result)
                    continue
                handed: Future[tuple[RunExtraction, int]] | Exception
                if run is None:
                    handed = missing()
                else:
                    try:
                        handed = pool.submit(run, settings, history)
                    except BrokenProcessPool:  # a worker died since the last result was taken
                        shutdown_shared_pool()
                        pool = None
                        handed = _extracted_here(store, run, settings, history)
                pending.append((key, run, started, handed))  # bounded: pool.in_flight
            if not pending or should_stop():
                return
            key, run, started, item = pending.popleft()
            if isinstance(item, Exception):
                yield ExtractedRun(key, run, started, item)
                continue
            try:
                extraction, worker_rss = item.result()
            except BrokenProcessPool:  # a worker was killed (out of memory?): start afresh
                shutdown_shared_pool()
                pool = None
                yield ExtractedRun(
                    key, run, started, ExtractionError("its worker process died (killed?)")
                )
                continue
            except Exception as exc:  # raised by the run's extraction in the worker
                yield ExtractedRun(key, run, started, exc)
                continue
            reset_peak_rss()
            yield ExtractedRun(key, run, started, extraction, worker_rss)
    finally:
        for *_, item in pending:
            if isinstance(item, Future):
                item.cancel()
