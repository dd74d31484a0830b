"""A remote artifact's download reports its bytes while it runs: a real ``mlflow server`` with
proxied artifacts, reached through a loopback proxy that sends artifact downloads slowly (as a
slow network would), read through the project's own artifact loading and through ``extract``
(the lines reach the Dagster run log from the helper thread that watches the download)."""

from __future__ import annotations

import contextlib
import pickle
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pytest

from mlruns_assets.demo.store import log_classification_run
from mlruns_assets.runtime.guardrails import MemoryGuard
from mlruns_assets.runtime.instance import open_instance
from mlruns_assets.runtime.progress import PROGRESS_PREFIX, ExtractionProgress
from mlruns_assets.source.artifacts import load_metrics_artifact
from mlruns_assets.source.tracking import TrackingStore
from mlruns_assets_tests.support.cli import run_cli
from mlruns_assets_tests.support.mlflow_server import running_mlflow_server
from mlruns_assets_tests.support.processes import free_port

PIECES = 30
PIECE_SECONDS = 0.15  # 30 pieces: the download takes about 4.5 s


def tracking_server(tmp_path: Path) -> contextlib.AbstractContextManager[str]:
    """``mlflow server`` with proxied artifacts: runs get ``mlflow-artifacts:`` URIs."""
    return running_mlflow_server(tmp_path)


@contextlib.contextmanager
def slow_proxy(upstream: str) -> Iterator[str]:
    """A loopback HTTP proxy to ``upstream`` that sends artifact downloads in ``PIECES`` pieces,
    ``PIECE_SECONDS`` apart; everything else passes at once."""

    class Handler(BaseHTTPRequestHandler):
        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() == "content-type"}
            request = urllib.request.Request(
                upstream + self.path, data=body, method=self.command, headers=headers
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    status, data = response.status, response.read()
                    kind = response.headers.get("Content-Type", "application/octet-stream")
            except urllib.error.HTTPError as exc:
                status, data = exc.code, exc.read()
                kind = exc.headers.get("Content-Type", "application/json")
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            slow = self.command == "GET" and "/mlflow-artifacts/artifacts/" in self.path
            step = -(-len(data) // PIECES) if slow else max(len(data), 1)
            for start in range(0, len(data), step):
                self.wfile.write(data[start : start + step])
                self.wfile.flush()
                if slow:
                    time.sleep(PIECE_SECONDS)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """(the tracking server's URI, the slow proxy's URI in front of it, the server's artifacts
    folder)."""
    folder = tmp_path_factory.mktemp("server")
    with tracking_server(folder) as direct, slow_proxy(direct) as proxied:
        yield direct, proxied, folder / "server-artifacts"


def test_a_slow_remote_download_reports_its_bytes_then_the_read(
    remote: tuple[str, str, Path], tmp_path: Path
) -> None:
    direct, proxied, _ = remote
    metrics = {"auroc": np.random.default_rng(0).random(600_000)}  # a 4.8 MB artifact
    local = tmp_path / "metrics_run.pickle"
    local.write_bytes(pickle.dumps(metrics, protocol=pickle.HIGHEST_PROTOCOL))
    client = mlflow.MlflowClient(direct)
    run_id = client.create_run(client.create_experiment("Raw")).info.run_id
    client.log_artifact(run_id, str(local), "metrics")
    client.set_terminated(run_id)

    store = TrackingStore(proxied)
    run = mlflow.MlflowClient(proxied).get_run(run_id)
    lines: list[tuple[float, str]] = []
    progress = ExtractionProgress(
        total=1,
        emit=lambda line: lines.append((time.monotonic(), line.split(" | ")[-1])),
        heartbeat_seconds=0,
    )
    started = time.monotonic()
    with store.artifacts(run) as artifacts:
        assert artifacts.download_dir is not None  # remote: downloaded first
        loaded, path = load_metrics_artifact(artifacts, MemoryGuard(None), progress.heartbeat)
    took = time.monotonic() - started
    assert np.array_equal(loaded["auroc"], metrics["auroc"])
    notes = [note for _, note in lines]
    size = f"{local.stat().st_size / 1e6:.1f} MB"
    downloads = [n for n in notes if n.startswith(f"downloading {path}: ")]
    print(f"\ndownload of {size} took {took:.1f} s: {downloads}")
    assert notes[0].startswith(f"loading {path} ("), notes
    assert len(downloads) >= 2, notes  # reported while it ran, with growing counts
    amounts = [float(n.split(": ")[1].split(" of ")[0]) for n in downloads]
    assert amounts == sorted(amounts) and len(set(amounts)) == len(amounts)
    assert all(n.endswith(f" of {size}") for n in downloads)
    assert notes[-1] == f"loaded {path}"
    times = [started] + [t for t, _ in lines]
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) < 2.5  # never silent long


def test_extract_logs_the_download_progress_to_the_run_log(
    remote: tuple[str, str, Path], tmp_path: Path
) -> None:
    direct, proxied, served = remote
    client = mlflow.MlflowClient(direct)
    experiment = client.create_experiment("Classification")
    y = np.array([0, 1] * 15)
    rng = np.random.default_rng(3)
    p = np.clip(0.3 + 0.4 * y[:, None] + rng.normal(0, 0.15, (30, 8)), 0.01, 0.99)
    codes = np.array([f"PLR{i:04d}" for i in range(30)])
    run_id = log_classification_run(
        client, experiment, "CATBOOST_eval-auc__simple1.0__SAITS__m0", codes, y, p
    )
    # MLflow writes a download to disk a MiB at a time: pad the pickle to a few MiB, so that
    # its growth shows (an extra key: the STRATOS tables read only theirs).
    (served_pickle,) = served.glob(f"*/{run_id}/artifacts/metrics/metrics_*.pickle")
    padded = pickle.loads(served_pickle.read_bytes())  # the test's own file: trusted
    padded["padding"] = rng.random(600_000)
    served_pickle.write_bytes(pickle.dumps(padded, protocol=pickle.HIGHEST_PROTOCOL))
    home = tmp_path / "home"
    code, output = run_cli(
        "extract",
        "--tracking-uri",
        proxied,
        "--db",
        str(tmp_path / "results.duckdb"),
        "--dagster-home",
        str(home),
        "--experiment",
        "Classification",
        "--heartbeat-seconds",
        "0",
    )
    assert code == 0, output
    with open_instance(home) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="classification_extraction_job"))
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS]
        messages = [
            r.event_log_entry.user_message
            for r in instance.get_records_for_run(runs[0].run_id).records
        ]
    mine = [m for m in messages if m.startswith(PROGRESS_PREFIX) and f"run {run_id}: " in m]
    downloads = [m for m in mine if "downloading metrics/metrics_" in m]
    print(f"\n{len(downloads)} download lines in the run log; last: {downloads[-1:]}")
    assert len(downloads) >= 2, mine
    loading = next(i for i, m in enumerate(mine) if "loading metrics/metrics_" in m)
    loaded = next(i for i, m in enumerate(mine) if "loaded metrics/metrics_" in m)
    assert loading < mine.index(downloads[0]) and mine.index(downloads[-1]) < loaded
