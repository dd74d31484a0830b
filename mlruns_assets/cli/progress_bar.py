"""The progress bar of ``extract``: the extraction steps' progress records as one bar over the
whole command (on a terminal), or as lines (in a log file or a pipe)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from mlruns_assets.runtime.progress import format_seconds


class ProgressBar(logging.Handler):
    """Renders the extraction steps' progress records as one bar over the whole command."""

    def __init__(self, total: int, write: Callable[[str], object], tty: bool) -> None:
        super().__init__(logging.INFO)
        self.total, self.write, self.tty = total, write, tty
        self.done = 0
        self.failures: dict[str, str] = {}
        self.started = time.monotonic()
        self.last_line = 0.0
        self.bar = ""

    def emit(self, record: logging.LogRecord) -> None:
        info = getattr(record, "progress", None)
        if not isinstance(info, dict):
            return
        if "partition" not in info:  # a heartbeat inside a partition: what the step is doing
            if self.tty:  # on the bar's line, overwritten by the next update
                self.write(f"\r\033[K{self.bar} | {str(info.get('note', ''))[:60]}")
            else:  # a log file or pipe: the whole line, so a stall shows where it happened
                self.write(record.getMessage() + "\n")
            return
        self.done += 1
        if info.get("error"):
            self.failures[str(info["partition"])] = str(info["error"])
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate else float("inf")
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
            f"| {rate:.1f} runs/s | ETA {format_seconds(eta)} | failed {len(self.failures)}"
        )
        self.bar = line
        if self.tty:
            self.write("\r\033[K" + line + ("\n" if self.done >= self.total else ""))
        elif time.monotonic() - self.last_line >= 5 or self.done >= self.total:
            self.last_line = time.monotonic()
            self.write(line + "\n")
