"""Memory guard and true peak RSS: fail a partition instead of swapping for 21 hours.

RSS is checked (psutil) between items and before an artifact is loaded, when its size is known.
Peak RSS is the kernel's high-water mark (VmHWM), reset at the start of each partition where
Linux allows it, so the reported figure is the partition's true peak, not the current RSS.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

from mlruns_assets.errors import ExtractionError

# A pickle of numpy arrays needs about its own size again while it is unpickled.
UNPICKLE_OVERHEAD = 2.0


class MemoryLimitExceeded(ExtractionError):
    """The step would pass (or has passed) its RSS limit."""


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
                f"memory limit {self.limit_bytes / 1e9:.2f} GB: RSS {rss / 1e9:.2f} GB"
                + (f" + {incoming_bytes / 1e9:.2f} GB artifact" if incoming_bytes else "")
                + f" at {what}"
            )
