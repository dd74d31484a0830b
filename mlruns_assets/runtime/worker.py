"""Which process does a run's work: the extraction step tags its run with it, so the stall sensor
can kill a hung worker and ``extract`` can tell a run whose worker died from one still working."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass

import psutil

# Set by the extraction step on its run: which process does the work (see ``worker_tags``).
WORKER_TAG = "mlruns_assets/worker"


@dataclass(frozen=True)
class WorkerProcess:
    """The process that runs (or ran) a run's step. ``started`` is its creation time when known
    exactly; else ``started_before`` bounds it. Either tells a reused pid from the worker."""

    host: str
    pid: int
    started: float | None = None
    started_before: float | None = None


def worker_tags() -> dict[str, str]:
    """Run tags naming the current process as the run's worker (set by the extraction step)."""
    me = psutil.Process()
    value = {"host": socket.gethostname(), "pid": me.pid, "started": me.create_time()}
    return {WORKER_TAG: json.dumps(value, sort_keys=True)}


def parse_worker_tag(value: str | None) -> WorkerProcess | None:
    if not value:
        return None
    try:
        data = json.loads(value)
        return WorkerProcess(str(data["host"]), int(data["pid"]), float(data["started"]))
    except (ValueError, KeyError, TypeError):
        return None


def live_process(worker: WorkerProcess) -> psutil.Process | None:
    """The worker's process if it runs on this host and is still alive (not a zombie, not a
    later process that reused its pid); None when gone or elsewhere."""
    if worker.host != socket.gethostname() or worker.pid == os.getpid():
        return None
    try:
        proc = psutil.Process(worker.pid)
        created = proc.create_time()
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    if worker.started is not None and abs(created - worker.started) > 1.0:
        return None
    if worker.started_before is not None and created > worker.started_before + 1.0:
        return None
    return proc
