"""Child processes of the tests: a free local port, and stopping a process group for good."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    """``killpg``, quiet when the group is already gone (or no longer ours to signal)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_process_group(proc: subprocess.Popen[Any], grace_seconds: float = 30.0) -> int:
    """Stop ``proc`` and every process of its group; returns ``proc``'s exit code.

    ``proc`` must lead its own process group (started with ``start_new_session=True``). The group
    gets SIGTERM and ``proc`` up to ``grace_seconds`` to exit; then the group gets SIGKILL, even if
    ``proc`` exited: a member can outlive its leader (a code server left behind by
    dagster-webserver, a run worker of the daemon)."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_seconds)
    _signal_group(proc.pid, signal.SIGKILL)
    return proc.wait(timeout=grace_seconds)
