"""Measuring child processes: wall time, CPU time and peak RSS.

A variant runs in a fresh child process. Its peak RSS is the kernel's high-water mark as
reported by ``wait4`` (``ru_maxrss``: the process's own peak, or that of its largest waited-for
descendant), so no sampling can miss a short spike. One trap: a spawned child's ``ru_maxrss``
starts at its parent's RSS (the pre-exec image counts), so the harness, which has imported
MLflow and Dagster itself, would put a floor of its own size under every figure. Each command
therefore runs under ``_WRAPPER``, a bare ``python -S`` process (about 5 MB) that forks, execs
the command and reports the ``wait4`` figures; ``measurement_floor()`` reports that floor.

``ru_maxrss`` is one process's peak, never a sum: ``extract --workers N`` runs its workers in
processes forked from a multiprocessing fork server (a child of the command), so the command's
figure would miss them. ``run_measured(..., tree=True)`` therefore also polls the wrapper's
descendants (``psutil`` ``children(recursive=True)``, every ``tree_interval_s``) and keeps the
peak of their summed RSS, of their summed PSS (``/proc/PID/smaps_rollup``: pages shared after
the fork counted once, split between the sharers) and the sum of each process's own VmHWM
(an upper bound: the peaks need not coincide). A poll can miss a spike shorter than its interval.

Process trees that outlive the measurement (the Dagster daemon and its run workers) are sampled
with psutil instead: the sum of RSS over the tree at each sample, and each process's own VmHWM
(a per-process high-water mark, so it misses nothing while the process lives).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

MB = 1e6


@dataclass(frozen=True)
class ProcessResult:
    """One finished child process."""

    command: list[str]
    returncode: int
    wall_s: float
    cpu_s: float  # user + system of the child and its waited-for descendants
    peak_rss_bytes: int
    stdout: str
    stderr: str
    load_before: float
    load_after: float
    tree: dict[str, float] | None = None  # with ``tree=True``: see ``TreePoller``

    def check(self) -> ProcessResult:
        if self.returncode != 0:
            raise RuntimeError(
                f"{' '.join(self.command[:3])} ... exited {self.returncode}:\n"
                f"{self.stdout[-2000:]}\n{self.stderr[-4000:]}"
            )
        return self


# Runs argv[2:], writes {"wall_s", "cpu_s", "maxrss_kb"} to argv[1], exits with its exit code.
_WRAPPER = """
import json, os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
with open(report, "w") as fh:
    cpu = usage.ru_utime + usage.ru_stime
    json.dump({"wall_s": wall, "cpu_s": cpu, "maxrss_kb": usage.ru_maxrss}, fh)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


class TreePoller:
    """Polls the descendants of ``root_pid`` (not the root: the wrapper) in a thread."""

    def __init__(self, root_pid: int, interval_s: float) -> None:
        self.root_pid = root_pid
        self.interval_s = interval_s
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_processes = 0
        self.hwm: dict[int, int] = {}
        self.cpu: dict[int, float] = {}  # user + system, last seen, per process
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def sample(self) -> None:
        try:
            procs = psutil.Process(self.root_pid).children(recursive=True)
        except psutil.Error:
            return
        rss = pss = alive = 0
        for proc in procs:
            try:
                full = proc.memory_full_info()
                times = proc.cpu_times()
            except psutil.Error:
                continue
            self.cpu[proc.pid] = times.user + times.system
            rss += full.rss
            pss += getattr(full, "pss", full.rss)
            alive += 1
            self.hwm[proc.pid] = max(self.hwm.get(proc.pid, 0), _vm_hwm(proc.pid))
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)
        self.peak_processes = max(self.peak_processes, alive)
        self.samples += 1

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {
            "peak_rss_sum_mb": self.peak_rss / MB,
            "peak_pss_sum_mb": self.peak_pss / MB,
            "hwm_sum_mb": sum(self.hwm.values()) / MB,
            "hwm_by_process_mb": sorted((v / MB for v in self.hwm.values()), reverse=True),
            "processes_seen": len(self.hwm),
            # CPU of every process seen, as last polled (a process's last poll can be up to
            # one interval before it ends)
            "cpu_s_sum": sum(self.cpu.values()),
            "cpu_s_by_process": sorted(self.cpu.values(), reverse=True)[:8],
            "peak_processes_at_once": self.peak_processes,
            "samples": self.samples,
            "interval_s": self.interval_s,
        }


def run_measured(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 3600.0,
    tree: bool = False,
    tree_interval_s: float = 0.05,
) -> ProcessResult:
    """Run ``command`` to completion under ``_WRAPPER``: wall time, CPU time and peak RSS
    (with ``tree``, also the polled figures of its whole process tree: ``TreePoller``)."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory() as tmp,
    ):
        report = Path(tmp) / "usage.json"
        load_before = os.getloadavg()[0]
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", _WRAPPER, str(report), *command],
            stdout=out,
            stderr=err,
            env=dict(env) if env else None,
            cwd=cwd,
            start_new_session=True,
        )
        poller = TreePoller(proc.pid, tree_interval_s) if tree else None
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop_group(proc, grace_s=5.0)
            raise
        finally:
            tree_figures = poller.stop() if poller else None
        usage = json.loads(report.read_text()) if report.exists() else {}
        out.seek(0)
        err.seek(0)
        return ProcessResult(
            command=list(command),
            returncode=returncode,
            wall_s=float(usage.get("wall_s", 0.0)),
            cpu_s=float(usage.get("cpu_s", 0.0)),
            peak_rss_bytes=int(usage.get("maxrss_kb", 0)) * 1024,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            load_before=load_before,
            load_after=os.getloadavg()[0],
            tree=tree_figures,
        )


def measurement_floor() -> int:
    """Peak RSS that ``run_measured`` reports for a command using almost nothing (``true``)."""
    return run_measured(["true"]).check().peak_rss_bytes


def _vm_hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class TreeSampler:
    """Samples a process tree in a background thread until ``stop()``."""

    root_pid: int
    interval_s: float = 0.1
    peak_sum_bytes: int = 0
    samples: int = 0
    hwm_by_pid: dict[int, int] = field(default_factory=dict)
    cmdline_by_pid: dict[int, str] = field(default_factory=dict)
    cpu_by_pid: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.root_pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def sample(self) -> int:
        """One sample: the summed RSS of the tree now (also records per-process peaks)."""
        total = 0
        for proc in self._processes():
            try:
                total += proc.memory_info().rss
                times = proc.cpu_times()
                if proc.pid not in self.cmdline_by_pid:
                    self.cmdline_by_pid[proc.pid] = " ".join(proc.cmdline())[:300]
            except psutil.Error:
                continue
            self.cpu_by_pid[proc.pid] = times.user + times.system
            self.hwm_by_pid[proc.pid] = max(self.hwm_by_pid.get(proc.pid, 0), _vm_hwm(proc.pid))
        self.peak_sum_bytes = max(self.peak_sum_bytes, total)
        self.samples += 1
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def start(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def idle_rss(self, seconds: float = 2.0) -> int:
        """The tree's mean summed RSS over ``seconds`` (call before ``start``)."""
        values = []  # bounded: a few samples
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            values.append(self.sample())
            time.sleep(self.interval_s)
        self.peak_sum_bytes = 0
        return int(sum(values) / max(len(values), 1))


def start_group(
    command: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path
) -> subprocess.Popen[bytes]:
    """Start a long-lived process in its own session (its own process group)."""
    handle = log.open("wb")
    return subprocess.Popen(
        list(command),
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )


def stop_group(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM the process group of ``proc``, then SIGKILL what is left after ``grace_s``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):  # what is left of the group
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
