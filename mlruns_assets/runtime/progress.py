"""Progress reported by the work loop itself: a hung loop stops reporting, which the stall
sensor sees. Each line carries done/total, rate, ETA, RSS and the database size.

Lines go to the Dagster run's event log (the UI, the stall sensor) and to the Python logger
``mlruns_assets.runtime.progress`` with structured fields, which ``mlruns-assets extract``
renders as its progress bar.

Long reads report too, but only as bytes arrive (``ProgressReader``): a slow read that keeps
delivering keeps its run alive, a read that stops goes quiet like any other hang, and its last
line names the artifact and how far it got.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mlruns_assets.runtime.errors import one_line
from mlruns_assets.runtime.guardrails import current_rss

PROGRESS_LOGGER = logging.getLogger("mlruns_assets.runtime.progress")
PROGRESS_PREFIX = "[progress]"
# The longest gap between "done" lines in the run log while partitions complete.
DONE_LINE_SECONDS = 10.0
# How often a read in progress reports its bytes (each report is a heartbeat, which reaches the
# run log only when one is due): often enough for any heartbeat interval worth setting.
READ_REPORT_SECONDS = 1.0
# The largest piece a ``ProgressReader`` takes from its file at a time (it takes what has
# arrived, up to this): one object of an artifact (a 500 MB array) is one read of the
# unpickler, which must not be one silent wait.
READ_CHUNK_BYTES = 1 << 20

_log = logging.getLogger(__name__)


class Heartbeat(Protocol):
    """Reports what the work loop is doing. A line reaches the run log only when a heartbeat is
    due, unless ``at_once``: the first line of work that may take long (loading an artifact),
    so that a hang inside it is named by the last line in the log, not by an older one."""

    def __call__(self, note: str, /, *, at_once: bool = False) -> None: ...


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
    # Downloads report from a helper thread (``source.artifacts``) while the loop waits.
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

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
        with self._lock:
            self._emit_locked(note, to_run_log, **fields)

    def _emit_locked(self, note: str, to_run_log: bool, **fields: object) -> None:
        text = self.line(note)
        if to_run_log:
            self.last_emit = time.monotonic()
            try:
                self.emit(text)
            except Exception as exc:
                # A progress line is not the partition's work: with the run log's storage away
                # (a Postgres restart; Dagster re-raises its own report of the lost line) it is
                # dropped, not taken for the run's failure. The step's materializations still
                # fail it if the storage stays away.
                _log.warning("progress line not written to the run log: %s", one_line(exc))
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

    def heartbeat(self, note: str, *, at_once: bool = False) -> None:
        """Called by the work loop between the steps of a partition, and by reads and downloads
        as bytes arrive (never merely because time passed, so a hung loop goes quiet); emits
        only when a heartbeat is due, or ``at_once`` (see ``Heartbeat``)."""
        with self._lock:
            if at_once or time.monotonic() - self.last_emit >= self.heartbeat_seconds:
                self._emit_locked(note, True)


class ProgressReader:
    """A binary file as the unpickler reads it (``read``, ``readinto``, ``readline``, ``peek``),
    counting the bytes it hands out and calling ``on_read(bytes_so_far)`` as they arrive, at
    most every ``every_seconds``, also inside one long read (a large array). Nothing is
    reported while no byte arrives: a read blocked for good goes quiet, so the stall sensor
    sees it.

    A failing ``on_read`` is logged once and not called again: reporting never fails a read."""

    def __init__(
        self,
        raw: io.BufferedIOBase,
        on_read: Callable[[int], None],
        every_seconds: float = READ_REPORT_SECONDS,
        chunk_bytes: int = READ_CHUNK_BYTES,
    ) -> None:
        self.raw = raw
        self.on_read: Callable[[int], None] | None = on_read
        self.every_seconds = every_seconds
        self.chunk_bytes = chunk_bytes
        self.bytes_read = 0
        self._last_report = time.monotonic()

    def _count(self, n: int) -> None:
        if n <= 0:
            return
        self.bytes_read += n
        now = time.monotonic()
        if self.on_read is None or now - self._last_report < self.every_seconds:
            return
        self._last_report = now
        try:
            self.on_read(self.bytes_read)
        except Exception as exc:
            _log.warning("read progress reporting failed, stopped: %s", exc)
            self.on_read = None

    def read(self, n: int = -1, /) -> bytes:
        """``n`` bytes (fewer only at the end of the file), taken as they arrive: a piece at a
        time (``read1``, at most ``chunk_bytes``), each counted. Joined as the file's own read
        would have allocated them: no extra peak."""
        if n is None or n < 0:
            data = self.raw.read()
            self._count(len(data))
            return data
        chunks: list[bytes] = []  # bounded: the n bytes the unpickler asked for, joined below
        remaining = n
        while remaining > 0:
            chunk = self.raw.read1(min(remaining, self.chunk_bytes))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
            self._count(len(chunk))
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def readinto(self, buffer: bytearray | memoryview, /) -> int:
        """Fill ``buffer`` (short only at the end of the file) in place, as the bytes arrive."""
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view):
            n = self.raw.readinto1(view[filled : filled + self.chunk_bytes])
            if not n:
                break
            filled += n
            self._count(n)
        return filled

    def readline(self, limit: int = -1, /) -> bytes:
        data = self.raw.readline(limit)
        self._count(len(data))
        return data

    def peek(self, n: int = 0, /) -> bytes:
        """What the next read would return, not consumed (so not counted): the unpickler
        peeks to prefetch, and stops trying when the raw file cannot."""
        peek = getattr(self.raw, "peek", None)
        if peek is None:
            raise NotImplementedError("peek")
        return bytes(peek(n))


def read_progress_note(artifact: str, done: int, total: int | None, verb: str = "reading") -> str:
    """``reading metrics/x.pickle: 12.0 of 48.3 MB`` (size unknown: ``12.0 MB so far``)."""
    if total:
        return f"{verb} {artifact}: {done / 1e6:.1f} of {total / 1e6:.1f} MB"
    return f"{verb} {artifact}: {done / 1e6:.1f} MB so far"
