"""Progress from inside a read: bytes reported as they arrive (a slow read keeps its run alive,
a stopped one goes quiet), and the first line of a load not held back by the heartbeat."""

from __future__ import annotations

import io
import os
import pickle
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from mlruns_assets.defs.stall_sensor import WatchedRun, find_stalled_runs
from mlruns_assets.runtime.progress import (
    ExtractionProgress,
    ProgressReader,
    read_progress_note,
)

# The slow writer delivers its bytes over SLOW_SECONDS; a heartbeat is due every HEARTBEAT.
HEARTBEAT = 0.5
REPORT = 0.2
STALL_TIMEOUT = 2.0
SLOW_SECONDS = 4.0


def payload() -> bytes:
    """A pickle of about 1 MB: protocol 2, so the unpickler reads it in many small pieces."""
    return pickle.dumps({"a": np.arange(100_000.0), "b": [str(i) for i in range(20_000)]}, 2)


def feed_slowly(fd: int, data: bytes, seconds: float, pieces: int = 40) -> threading.Thread:
    """Write ``data`` to ``fd`` in ``pieces`` over ``seconds``, then close it."""

    def run() -> None:
        step = -(-len(data) // pieces)
        with os.fdopen(fd, "wb", buffering=0) as sink:
            for start in range(0, len(data), step):
                sink.write(data[start : start + step])
                time.sleep(seconds / pieces)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def slow_pipe() -> Iterator[tuple[io.BufferedReader, bytes]]:
    data = payload()
    read_fd, write_fd = os.pipe()
    writer = feed_slowly(write_fd, data, SLOW_SECONDS)
    with os.fdopen(read_fd, "rb") as source:
        yield source, data
    writer.join(timeout=10)


def test_a_slow_read_reports_its_bytes_as_they_arrive_and_is_never_silent_for_long(
    slow_pipe: tuple[io.BufferedReader, bytes],
) -> None:
    source, data = slow_pipe
    emitted: list[tuple[float, str]] = []
    progress = ExtractionProgress(
        total=1,
        emit=lambda line: emitted.append((time.time(), line)),
        heartbeat_seconds=HEARTBEAT,
    )
    started = time.time()
    progress.heartbeat("loading x.pickle", at_once=True)

    def on_read(done: int) -> None:
        progress.heartbeat(read_progress_note("x.pickle", done, len(data)))

    reader = ProgressReader(source, on_read, every_seconds=REPORT)
    loaded = pickle.Unpickler(reader).load()
    took = time.time() - started

    assert np.array_equal(loaded["a"], np.arange(100_000.0))
    assert reader.bytes_read == len(data)
    assert took >= SLOW_SECONDS * 0.8, took  # the read really was slow...
    reads = [line for _, line in emitted if "| reading x.pickle: " in line]
    assert len(reads) >= 4, emitted  # ...and reported all along, with growing counts
    amounts = [float(line.split(": ")[-1].split(" of ")[0]) for line in reads]
    assert amounts == sorted(amounts) and amounts[-1] > amounts[0]
    assert reads[-1].endswith(f" of {len(data) / 1e6:.1f} MB")
    # A stall sensor looking at any moment of the read saw a recent line: never stalled.
    times = [started] + [t for t, _ in emitted] + [time.time()]
    for at in np.arange(started, times[-1], 0.1):
        last = max(t for t in times[:-1] if t <= at)
        assert not find_stalled_runs([WatchedRun("r", last)], float(at), STALL_TIMEOUT)


def test_a_read_that_stops_goes_quiet_and_its_last_line_says_how_far_it_got() -> None:
    data = payload()
    read_fd, write_fd = os.pipe()
    half = len(data) // 2
    reports: list[tuple[float, int]] = []
    stopped_at: list[float] = []

    def write_half_then_stop() -> None:
        with os.fdopen(write_fd, "wb", buffering=0) as sink:
            for start in range(0, half, half // 10):
                sink.write(data[start : min(start + half // 10, half)])
                time.sleep(0.1)
            stopped_at.append(time.monotonic())
            time.sleep(2.0)  # silent, pipe still open: the read blocks

    threading.Thread(target=write_half_then_stop, daemon=True).start()
    with os.fdopen(read_fd, "rb") as source:
        reader = ProgressReader(
            source, lambda n: reports.append((time.monotonic(), n)), every_seconds=0.05
        )
        # The writer finally closes the pipe halfway through the pickle.
        with pytest.raises((EOFError, pickle.UnpicklingError)):
            pickle.Unpickler(reader).load()
    (stopped,) = stopped_at
    assert reports and max(n for _, n in reports) <= half
    gaps = [b[0] - a[0] for a, b in zip(reports, reports[1:], strict=False)]
    assert max(gaps) < 1.0  # reported while the bytes came...
    assert reports[-1][0] <= stopped + 0.1  # ...and not once in the 2 s without any
    assert reports[-1][1] >= half * 0.7  # the last report says how far it got


def test_the_reader_hands_the_unpickler_every_byte_and_counts_them() -> None:
    for protocol in (2, 4, 5):
        data = pickle.dumps({"a": np.arange(50_000.0), "s": "x" * 70_000}, protocol)
        counts: list[int] = []
        reader = ProgressReader(io.BufferedReader(io.BytesIO(data)), counts.append, 0.0)
        loaded = pickle.Unpickler(reader).load()
        assert loaded["s"] == "x" * 70_000 and reader.bytes_read == len(data)
        assert counts and counts[-1] == len(data)
        assert reader.read(1) == b""  # nothing left: peeked bytes were consumed, not lost


def test_reporting_that_fails_stops_reporting_and_never_fails_the_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = payload()

    def broken(_: int) -> None:
        raise RuntimeError("event log unavailable")

    reader = ProgressReader(io.BufferedReader(io.BytesIO(data)), broken, 0.0)
    assert pickle.Unpickler(reader).load()["b"][-1] == "19999"
    assert reader.on_read is None
    assert "event log unavailable" in caplog.text


def test_the_first_line_of_a_load_reaches_the_run_log_at_once() -> None:
    lines: list[str] = []
    progress = ExtractionProgress(total=3, emit=lines.append, heartbeat_seconds=3600)
    progress.partition_done("k1")  # the first done line: the run log has a line just now
    progress.heartbeat("run k2: read the metric history")  # not due: held back
    progress.heartbeat("run k2: loading metrics/m.pickle (2.0 MB)", at_once=True)
    progress.heartbeat(read_progress_note("metrics/m.pickle", 1_000_000, 2_000_000))  # not due
    assert [line.split(" | ")[-1] for line in lines] == [
        "done k1",
        "run k2: loading metrics/m.pickle (2.0 MB)",
    ]
    assert lines[-1].startswith("[progress] 1/3 partitions")  # the current count


def test_read_progress_notes() -> None:
    assert read_progress_note("m.pickle", 12_345_678, 48_300_000) == (
        "reading m.pickle: 12.3 of 48.3 MB"
    )
    assert read_progress_note("m.pickle", 2_000_000, None, verb="downloading") == (
        "downloading m.pickle: 2.0 MB so far"
    )
    assert read_progress_note("m.pickle", 0, 0) == "reading m.pickle: 0.0 MB so far"
