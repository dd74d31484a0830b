"""A run's pickled artifacts, found by folder and loaded with the allow-list unpickler under the
memory guard, reporting progress as the bytes arrive.

A load reports ``loading <artifact> (<size>)`` at once, then, through the heartbeat (which
reaches the run log only when one is due), ``downloading <artifact>: X of Y MB`` while a remote
store's artifact is downloaded and ``reading <artifact>: X of Y MB`` while it is unpickled.
Progress is reported only when bytes have arrived since the last report, never merely because
time passed: a slow transfer keeps its run alive, one that stops goes quiet and the stall
sensor fails the run, quoting the last of these lines.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlruns_assets.runtime.guardrails import MemoryGuard, format_bytes
from mlruns_assets.runtime.progress import READ_REPORT_SECONDS, Heartbeat, read_progress_note
from mlruns_assets.source.run_data import ArtifactAccess
from mlruns_assets.source.safe_pickle import load_untrusted_pickle

METRICS_FOLDER = "metrics"
IMPUTATION_FOLDER = "imputation"
# How often a download's growing files are measured (a stat per file of the download folder).
DOWNLOAD_POLL_SECONDS = READ_REPORT_SECONDS


def folder_bytes(folder: str | os.PathLike[str]) -> int:
    """The total size of the regular files under ``folder`` (0 when it does not exist); files
    that vanish while it is walked (a download's temporary files) are skipped."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


@contextlib.contextmanager
def download_progress(
    folder: str | os.PathLike[str],
    report: Callable[[int], None],
    every_seconds: float = DOWNLOAD_POLL_SECONDS,
) -> Iterator[None]:
    """While the body runs (a download into ``folder``), a helper thread measures the bytes
    that have arrived in ``folder`` every ``every_seconds`` and calls ``report(bytes_so_far)``
    when they have grown since the last report: a download that stops goes quiet."""
    before = folder_bytes(folder)
    stop = threading.Event()

    def poll() -> None:
        reported = 0
        while not stop.wait(every_seconds):
            arrived = folder_bytes(folder) - before
            if arrived > reported:
                reported = arrived
                try:
                    report(arrived)
                except Exception:  # reporting must never fail the download it watches
                    return

    thread = threading.Thread(target=poll, name="artifact-download-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=max(every_seconds, 1.0) * 5)


def _fetch(
    artifacts: ArtifactAccess, path: str, size: int | None, heartbeat: Heartbeat | None
) -> Path:
    """A local file for the artifact; a download reports its bytes while it runs."""
    if heartbeat is None or artifacts.download_dir is None:
        return artifacts.local_path(path)

    def report(done: int) -> None:
        heartbeat(read_progress_note(path, done, size, verb="downloading"))

    with download_progress(artifacts.download_dir, report):
        return artifacts.local_path(path)


def load_pickle_artifact(
    artifacts: ArtifactAccess,
    folder: str,
    expected: str,
    memory: MemoryGuard,
    heartbeat: Heartbeat | None = None,
) -> tuple[Any, str]:
    """The run's one ``{folder}/{folder}_*.pickle``, loaded with the allow-list unpickler.

    ``expected`` names the artifact in the error when there is none. ``heartbeat`` gets
    ``loading <artifact>`` at once (not held back by the heartbeat interval: if the load
    hangs, the run log's last line names it), then the download's and the read's bytes as
    they arrive, and ``loaded <artifact>``."""
    candidates = [
        (path, size)
        for path, size in artifacts.list(folder)
        if path.rsplit("/", 1)[-1].startswith(f"{folder}_") and path.endswith(".pickle")
    ]
    if not candidates:
        raise FileNotFoundError(f"missing {folder} artifact {expected}")
    if len(candidates) > 1:
        names = ", ".join(p for p, _ in candidates)
        raise ValueError(f"several {folder} artifacts ({names}): cannot tell which is the run's")
    path, size = candidates[0]
    memory.check(f"loading {path}", size or 0)
    if heartbeat is None:
        return load_untrusted_pickle(artifacts.local_path(path), display_name=path), path
    heartbeat(f"loading {path} ({format_bytes(size or 0)})", at_once=True)
    local = _fetch(artifacts, path, size, heartbeat)
    if not size:  # the listing did not say: the local file may (a FIFO or a pipe does not)
        with contextlib.suppress(OSError):
            size = os.path.getsize(local)

    def on_read(done: int) -> None:
        heartbeat(read_progress_note(path, done, size))

    loaded = load_untrusted_pickle(local, display_name=path, on_read=on_read)
    heartbeat(f"loaded {path}")
    return loaded, path


def load_metrics_artifact(
    artifacts: ArtifactAccess,
    memory: MemoryGuard,
    heartbeat: Heartbeat | None = None,
) -> tuple[Any, str]:
    """The run's ``metrics/metrics_*.pickle``."""
    expected = f"{METRICS_FOLDER}/metrics_{artifacts.run.info.run_name}.pickle"
    return load_pickle_artifact(artifacts, METRICS_FOLDER, expected, memory, heartbeat)


def load_imputation_artifact(
    artifacts: ArtifactAccess,
    memory: MemoryGuard,
    heartbeat: Heartbeat | None = None,
) -> tuple[Any, str]:
    """The run's ``imputation/imputation_*.pickle``."""
    expected = f"{IMPUTATION_FOLDER}/{IMPUTATION_FOLDER}_<model>.pickle"
    return load_pickle_artifact(artifacts, IMPUTATION_FOLDER, expected, memory, heartbeat)
