"""The progress display of ``extract``: the extraction steps' progress records as one rich
progress bar over the whole command on a terminal, or as plain lines in a log file or a pipe.

The lines for files and pipes are written here because rich renders a live display there only
when it stops (or every refresh as a new line): a log would show nothing, or a line every
quarter second, while a long extraction runs; a line every 5 s, and every heartbeat in full,
shows where a stall happened.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from mlruns_assets.runtime.progress import format_seconds

LINE_SECONDS = 5.0


class ProgressBar(logging.Handler):
    """Renders the extraction steps' progress records over the whole command; ``finish()``
    ends the live display."""

    def __init__(
        self,
        total: int,
        write: Callable[[str], object],
        tty: bool,
        console: Console | None = None,
    ) -> None:
        super().__init__(logging.INFO)
        self.total, self.write, self.tty = total, write, tty
        self.done = 0
        self.failures: dict[str, str] = {}
        self.started = time.monotonic()
        self.last_line = 0.0
        self.live: Progress | None = None
        self.task: TaskID | None = None
        if tty:
            self.live = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} runs/s | failed {task.fields[failed]}"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[note]}", style="dim"),
                console=console or Console(file=sys.stderr),
                transient=False,
            )
            self.task = self.live.add_task("extract", total=total, rate="-", failed=0, note="")
            self.live.start()

    def emit(self, record: logging.LogRecord) -> None:
        info = getattr(record, "progress", None)
        if not isinstance(info, dict):
            return
        if "partition" not in info:  # a heartbeat inside a partition: what the step is doing
            if self.live is not None and self.task is not None:
                self.live.update(self.task, note=str(info.get("note", ""))[:28])
            else:  # a log file or pipe: the whole line, so a stall shows where it happened
                self.write(record.getMessage() + "\n")
            return
        self.done += 1
        if info.get("error"):
            self.failures[str(info["partition"])] = str(info["error"])
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        if self.live is not None and self.task is not None:
            self.live.update(
                self.task, completed=self.done, rate=f"{rate:.1f}", failed=len(self.failures)
            )
            return
        if time.monotonic() - self.last_line >= LINE_SECONDS or self.done >= self.total:
            self.last_line = time.monotonic()
            eta = (self.total - self.done) / rate if rate else float("inf")
            filled = int(30 * self.done / max(self.total, 1))
            self.write(
                f"[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} "
                f"| {rate:.1f} runs/s | ETA {format_seconds(eta)} | failed {len(self.failures)}\n"
            )

    def finish(self) -> None:
        """End the live display (not ``close``: Dagster closes the handlers it finds on the
        loggers of a run, which must not end the display of the whole command)."""
        if self.live is not None and self.task is not None:
            self.live.update(self.task, note="")
            self.live.stop()
            self.live = None
