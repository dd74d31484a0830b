"""Guardrails: fail a partition (or the whole command) instead of swapping for 21 hours.

- Memory guard: RSS is checked (psutil) between items and before an artifact is loaded, when its
  size is known.
- Peak RSS is the kernel's high-water mark (VmHWM), reset at the start of each partition where
  Linux allows it, so the reported figure is the partition's true peak, not the current RSS.
- Free disk: checked before any work starts, so a full disk fails in a second, not hours in.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from mlruns_assets.runtime.errors import ExtractionError

# A pickle of numpy arrays needs about its own size again while it is unpickled.
UNPICKLE_OVERHEAD = 2.0


class MemoryLimitExceeded(ExtractionError):
    """The step would pass (or has passed) its RSS limit."""


class LowDiskSpace(ExtractionError):
    """Less free disk than the configured minimum where the results are written."""


def format_bytes(n: float) -> str:
    """``1.23 GB`` / ``4.5 MB`` / ``812 kB``: short enough for a one-line message."""
    if abs(n) >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if abs(n) >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.0f} kB"


def current_rss() -> int:
    return int(psutil.Process().memory_info().rss)


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark of this process (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss() -> int:
    """The RSS high-water mark since the last reset (VmHWM), else since the process started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(usage if sys.platform == "darwin" else usage * 1024)


@dataclass(frozen=True)
class MemoryGuard:
    """Fails the partition with a message naming the limit, the RSS and the artifact."""

    limit_bytes: int | None

    def check(self, what: str, incoming_bytes: int = 0) -> None:
        if self.limit_bytes is None:
            return
        rss = current_rss()
        needed = rss + int(incoming_bytes * UNPICKLE_OVERHEAD)
        if needed > self.limit_bytes:
            raise MemoryLimitExceeded(
                # GB, as the limit is given (--max-memory-gb); the artifact in its own unit.
                f"memory limit {self.limit_bytes / 1e9:.3g} GB exceeded: RSS {rss / 1e9:.3g} GB"
                + (
                    f" + {format_bytes(incoming_bytes)} artifact x{UNPICKLE_OVERHEAD:g} to unpickle"
                    if incoming_bytes
                    else ""
                )
                + f" at {what}"
            )


def _existing_ancestor(path: Path) -> Path:
    """The path itself or its nearest existing parent: what ``disk_usage`` can measure."""
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_free_disk(paths: Iterable[Path], min_free_bytes: int) -> None:
    """Raise ``LowDiskSpace`` naming the folder, its free space and the minimum when any of the
    given folders (each file system once) has less than ``min_free_bytes`` free."""
    seen: set[int] = set()  # bounded: one device id per given path
    for path in paths:
        folder = _existing_ancestor(path)
        device = os.stat(folder).st_dev
        if device in seen:
            continue
        seen.add(device)
        free = shutil.disk_usage(folder).free
        if free < min_free_bytes:
            raise LowDiskSpace(
                f"only {format_bytes(free)} free on the disk of {folder}, below the minimum "
                f"of {min_free_bytes / 1e9:g} GB"
            )
