"""The progress display of ``extract``: a rich bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io
import logging

from rich.console import Console

from mlruns_assets.cli.progress_bar import ProgressBar


def _record(**progress: object) -> logging.LogRecord:
    record = logging.LogRecord("p", logging.INFO, "", 0, f"[progress] {progress}", None, None)
    record.progress = progress
    return record


def test_terminal_gets_one_rich_bar_with_failures_counted() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    written: list[str] = []
    bar = ProgressBar(3, written.append, tty=True, console=console)
    bar.emit(_record(note="loading metrics/metrics_a.pickle"))
    bar.emit(_record(partition="a"))
    bar.emit(_record(partition="b", error="run b: corrupt pickle"))
    bar.emit(_record(partition="c"))
    bar.finish()
    assert written == []  # nothing bypasses the display
    assert "3/3" in screen.getvalue() and "failed 1" in screen.getvalue()
    assert bar.failures == {"b": "run b: corrupt pickle"}


def test_a_pipe_gets_whole_lines_for_heartbeats_and_the_last_partition() -> None:
    written: list[str] = []
    bar = ProgressBar(2, written.append, tty=False)
    bar.emit(_record(note="loading x"))
    bar.emit(_record(partition="a"))
    bar.emit(_record(partition="b"))
    bar.finish()
    assert written[0].startswith("[progress]")
    assert written[-1].startswith("[##############################] 2/2")
