"""Progress reported by the work loop itself: a hung loop stops reporting, which the stall
sensor sees. Each line carries done/total, rate, ETA, RSS and the database size.

Lines go to the Dagster run's event log (the UI, the stall sensor) and to the Python logger
``mlruns_assets.runtime.progress`` with structured fields, which ``mlruns-assets extract``
renders as its progress bar.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlruns_assets.runtime.guardrails import current_rss

PROGRESS_LOGGER = logging.getLogger("mlruns_assets.runtime.progress")
PROGRESS_PREFIX = "[progress]"
# The longest gap between "done" lines in the run log while partitions complete.
DONE_LINE_SECONDS = 10.0


def format_seconds(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class ExtractionProgress:
    """Counts partitions of one step and emits progress lines: as partitions complete (see
    ``partition_done``) and at least every ``heartbeat_seconds`` while the loop is working
    inside a partition."""

    total: int
    emit: Callable[[str], None]
    database: Path | None = None
    heartbeat_seconds: float = 60.0
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)
    last_emit: float = field(default_factory=time.monotonic)

    def line(self, note: str = "") -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        db_mb = (
            os.path.getsize(self.database) / 1e6
            if self.database is not None and self.database.exists()
            else 0.0
        )
        text = (
            f"{PROGRESS_PREFIX} {self.done}/{self.total} partitions ({self.failed} failed)"
            f" | {rate:.2f}/s | ETA {format_seconds(eta)} | RSS {current_rss() / 1e6:.0f} MB"
            f" | db {db_mb:.1f} MB"
        )
        return f"{text} | {note}" if note else text

    def _emit(self, note: str, to_run_log: bool = True, **fields: object) -> None:
        text = self.line(note)
        if to_run_log:
            self.last_emit = time.monotonic()
            self.emit(text)
        PROGRESS_LOGGER.info(
            text,
            extra={"progress": {"done": self.done, "total": self.total, "note": note, **fields}},
        )

    def partition_done(self, key: str, error: str | None = None) -> None:
        """Count a partition. Every one goes to the Python logger (the command's progress bar);
        the run log gets failures, the first and the last, and otherwise a line only when one
        is due (``DONE_LINE_SECONDS``): each line there is a Dagster event costing ~20 ms, as
        much as a small partition's commit, and the materializations already mark progress."""
        self.done += 1
        if error is not None:
            self.failed += 1
            self._emit(f"FAILED {key}: {error}", partition=key, error=error)
            return
        due = time.monotonic() - self.last_emit >= min(self.heartbeat_seconds, DONE_LINE_SECONDS)
        first_or_last = self.done == 1 or self.done >= self.total
        self._emit(f"done {key}", to_run_log=due or first_or_last, partition=key)

    def heartbeat(self, note: str) -> None:
        """Called by the work loop between the steps of a partition (never by a timer, so a
        hung loop goes quiet); emits only when a heartbeat is due."""
        if time.monotonic() - self.last_emit >= self.heartbeat_seconds:
            self._emit(note)
