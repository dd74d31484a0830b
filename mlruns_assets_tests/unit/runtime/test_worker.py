"""Which process does a run's work: the worker tag, and telling a live worker from a reused pid."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil

from mlruns_assets.runtime.worker import (
    WORKER_TAG,
    WorkerProcess,
    live_process,
    parse_worker_tag,
    worker_tags,
)


def test_worker_tag_identifies_a_live_process_and_not_a_reused_pid() -> None:
    me = parse_worker_tag(worker_tags()[WORKER_TAG])
    assert me is not None and me.pid == os.getpid()
    assert parse_worker_tag("not json") is None and parse_worker_tag(None) is None
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = psutil.Process(child.pid).create_time()
        worker = WorkerProcess(me.host, child.pid, started)
        assert live_process(worker) is not None
        assert live_process(WorkerProcess("another-host", child.pid, started)) is None
        assert live_process(WorkerProcess(me.host, child.pid, started + 3600)) is None  # reused
        assert live_process(WorkerProcess(me.host, child.pid, None, started - 60)) is None
        assert live_process(WorkerProcess(me.host, child.pid, None, started + 5)) is not None
        assert live_process(me) is None  # never the sensor's own process
    finally:
        child.kill()
        child.wait()
    assert live_process(WorkerProcess(me.host, child.pid, started)) is None
