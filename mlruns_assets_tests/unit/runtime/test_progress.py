"""Progress lines from the work loop: heartbeats due only after their interval, done lines to
the run log rate-limited and to the progress bar all."""

from __future__ import annotations

import logging

import pytest

from mlruns_assets.runtime.progress import PROGRESS_LOGGER, PROGRESS_PREFIX, ExtractionProgress


def test_progress_heartbeat_is_due_only_after_its_interval() -> None:
    lines: list[str] = []
    quiet = ExtractionProgress(total=2, emit=lines.append, heartbeat_seconds=3600)
    for note in ("a", "b", "c"):
        quiet.heartbeat(note)
    assert lines == []
    quiet.partition_done("k1")
    assert len(lines) == 1 and lines[0].startswith(f"{PROGRESS_PREFIX} 1/2 partitions")
    chatty = ExtractionProgress(total=2, emit=lines.append, heartbeat_seconds=0)
    chatty.heartbeat("loading x")
    assert lines[-1].endswith("| loading x") and "RSS" in lines[-1]


def test_done_lines_reach_the_run_log_rate_limited_and_the_progress_bar_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lines: list[str] = []
    progress = ExtractionProgress(total=5, emit=lines.append, heartbeat_seconds=3600)
    with caplog.at_level(logging.INFO, logger=PROGRESS_LOGGER.name):
        progress.partition_done("k1")
        progress.partition_done("k2")
        progress.partition_done("k3", error="run k3: bad pickle")
        progress.partition_done("k4")
        progress.partition_done("k5")
    # The run log: the first, every failure and the last (each line is a Dagster event)...
    assert [line.split(" | ")[-1] for line in lines] == [
        "done k1",
        "FAILED k3: run k3: bad pickle",
        "done k5",
    ]
    # ...the command's progress bar: every partition.
    parts = [r.progress["partition"] for r in caplog.records]  # type: ignore[attr-defined]
    assert parts == ["k1", "k2", "k3", "k4", "k5"]


def test_a_run_log_that_cannot_be_written_fails_no_partition(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Dagster raises from a log call when the instance's storage is away (it re-raises its own
    report of the lost line): the work loop carries on, the progress bar still gets the line."""

    def storage_away(_line: str) -> None:
        raise ConnectionError("too many retries for DB connection")

    progress = ExtractionProgress(total=2, emit=storage_away, heartbeat_seconds=0)
    with caplog.at_level(logging.INFO, logger=PROGRESS_LOGGER.name):
        progress.heartbeat("loading x", at_once=True)
        progress.partition_done("k1", error="run k1: bad pickle")
        progress.partition_done("k2")
    assert (progress.done, progress.failed) == (2, 1)
    notes = [r.progress["note"] for r in caplog.records if hasattr(r, "progress")]
    assert notes == ["loading x", "FAILED k1: run k1: bad pickle", "done k2"]
    assert any("not written to the run log" in r.getMessage() for r in caplog.records)
