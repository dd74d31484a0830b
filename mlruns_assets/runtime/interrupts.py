"""A request to stop, from an interrupt: ``extract`` sets it on the first SIGINT or SIGTERM, and
the partition loop starts no new partition once it is set (the one in flight commits or rolls
back). A second signal ends the process at once; DuckDB then rolls the open transaction back.

One flag per process, because a signal is: the loop runs in a worker thread while the main
thread waits for signals.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

_STOP = threading.Event()
EXIT_INTERRUPTED = 130


def request_stop() -> None:
    _STOP.set()


def stop_requested() -> bool:
    return _STOP.is_set()


def clear_stop_request() -> None:
    _STOP.clear()


def run_interruptibly(target: Callable[[], None], write: Callable[[str], object]) -> bool:
    """Run ``target`` in a worker thread while this (main) thread handles SIGINT and SIGTERM:
    the first asks the work to stop after the partition in flight, a second ends the process at
    once (exit 130; DuckDB rolls the open transaction back, and the next ``extract`` fails the
    orphaned Dagster run). Returns whether a stop was requested."""
    clear_stop_request()
    if threading.current_thread() is not threading.main_thread():
        target()
        return stop_requested()

    def on_signal(signum: int, _frame: object) -> None:
        if stop_requested():
            write("\nmlruns-assets: stopped at once; rerun to resume\n")
            os._exit(EXIT_INTERRUPTED)
        request_stop()
        write(
            f"\nmlruns-assets: {signal.Signals(signum).name}: finishing the partition in "
            "flight, then stopping (again to stop at once)\n"
        )

    errors: list[BaseException] = []  # bounded: at most the worker's one exception

    def work() -> None:
        try:
            target()
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker = threading.Thread(target=work, name="mlruns-assets-extract")
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if errors:
        raise errors[0]
    return stop_requested()
