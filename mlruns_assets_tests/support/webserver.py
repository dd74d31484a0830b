"""A real Dagster web server on loopback, and GraphQL queries against it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from mlruns_assets.runtime.settings import ENV_PREFIX, Settings
from mlruns_assets_tests.support.processes import free_port, stop_process_group

SERVER_START_TIMEOUT = 120.0

WORKSPACE_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } }
} } } }
"""


def graphql(port: int, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body["errors"]
    return dict(body["data"])


def wait_until_loaded(proc: subprocess.Popen[bytes], port: int, log: Path) -> list[dict[str, Any]]:
    """Poll until the server answers and its code location finished loading."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    last_error: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"dagster-webserver exited with {proc.returncode}:\n{log.read_text()[-4000:]}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                pass
            workspace = graphql(port, WORKSPACE_QUERY)["workspaceOrError"]
            entries = workspace.get("locationEntries") or []
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return list(entries)
            last_error = workspace
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last_error = exc
        time.sleep(0.5)
    pytest.fail(
        f"dagster-webserver did not load within {SERVER_START_TIMEOUT:.0f} s "
        f"(last: {last_error}):\n{log.read_text()[-4000:]}"
    )


def clean_environ(**overrides: str) -> dict[str, str]:
    """This process's environment without any MLRUNS_ASSETS_* setting, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return {**env, **overrides}


@contextlib.contextmanager
def running_webserver(
    settings: Settings, home: Path, folder: Path, extra_env: Mapping[str, str] | None = None
) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """``dagster-webserver`` for the code location configured by ``settings`` on the instance
    at ``home``; yields (port, its workspace entries) once loaded, stops its process group."""
    port = free_port()
    log = folder / f"webserver-{port}.log"
    env = clean_environ(**settings.to_env(), DAGSTER_HOME=str(home), **(extra_env or {}))
    cmd = [sys.executable, "-m", "dagster_webserver", "-m", "mlruns_assets.definitions"]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*cmd, "-h", "127.0.0.1", "-p", str(port)],
            env=env,
            cwd=folder,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so the code server stops with it
        )
    try:
        yield port, wait_until_loaded(proc, port, log)
    finally:
        stop_process_group(proc)
