"""Loading an artifact reports as it goes: ``loading`` at once, then the download's and the read's
bytes as they arrive, and nothing while none arrive (a stopped transfer goes quiet)."""

from __future__ import annotations

import os
import pickle
import threading
import time
from pathlib import Path

import numpy as np

from mlruns_assets.runtime.guardrails import MemoryGuard
from mlruns_assets.runtime.progress import ExtractionProgress
from mlruns_assets.source.artifacts import download_progress, load_pickle_artifact
from mlruns_assets.source.tracking import RunArtifacts

ARTIFACT = "metrics/metrics_run.pickle"


class FolderArtifacts(RunArtifacts):
    """A run's artifacts in a folder, without MLflow. With ``download`` set, ``local_path``
    copies the file into the download folder slowly, as a remote store's download would."""

    def __init__(
        self, folder: Path, *, size: int | None, download: Path | None = None, pieces: int = 30
    ) -> None:
        self.folder, self.size, self.pieces = folder, size, pieces
        self.download_dir = str(download) if download is not None else None
        self.pause_after: int | None = None  # a piece after which the download pauses
        self.pause_seconds = 0.0

    def list(self, folder: str) -> list[tuple[str, int | None]]:
        return [(ARTIFACT, self.size)] if folder == "metrics" else []

    def local_path(self, artifact_path: str) -> Path:
        source = self.folder / artifact_path
        if self.download_dir is None:
            return source
        data = source.read_bytes()
        target = Path(self.download_dir) / artifact_path
        target.parent.mkdir(parents=True, exist_ok=True)
        step = -(-len(data) // self.pieces)
        with target.open("wb", buffering=0) as sink:
            for i, start in enumerate(range(0, len(data), step)):
                sink.write(data[start : start + step])
                time.sleep(0.1)
                if i == self.pause_after:
                    time.sleep(self.pause_seconds)
        return target


def _payload() -> tuple[dict[str, object], bytes]:
    obj = {"auroc": np.linspace(0, 1, 150_000), "codes": [f"S{i:04d}" for i in range(5_000)]}
    return obj, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _recorder(heartbeat_seconds: float) -> tuple[ExtractionProgress, list[tuple[float, str]]]:
    lines: list[tuple[float, str]] = []
    progress = ExtractionProgress(
        total=1,
        emit=lambda line: lines.append((time.monotonic(), line.split(" | ")[-1])),
        heartbeat_seconds=heartbeat_seconds,
    )
    return progress, lines


def test_a_slow_local_read_is_reported_from_loading_to_loaded(tmp_path: Path) -> None:
    obj, data = _payload()
    fifo = tmp_path / ARTIFACT
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)  # like a slow network file system: the bytes come when they come

    def feed() -> None:
        with fifo.open("wb", buffering=0) as sink:
            step = len(data) // 35 + 1
            for start in range(0, len(data), step):
                sink.write(data[start : start + step])
                time.sleep(0.12)

    threading.Thread(target=feed, daemon=True).start()
    progress, lines = _recorder(heartbeat_seconds=0.5)
    progress.partition_done("earlier")  # the run log has a line just now: a heartbeat not due
    loaded, path = load_pickle_artifact(
        FolderArtifacts(tmp_path, size=None),
        "metrics",
        ARTIFACT,
        MemoryGuard(None),
        progress.heartbeat,
    )
    assert path == ARTIFACT and np.array_equal(loaded["auroc"], obj["auroc"])
    notes = [note for _, note in lines]
    assert notes[:2] == ["done earlier", f"loading {ARTIFACT} (0 kB)"]  # at once, not held back
    reads = [n for n in notes if n.startswith(f"reading {ARTIFACT}: ")]
    assert len(reads) >= 3 and all(n.endswith(" MB so far") for n in reads), notes
    assert notes[-1] == f"loaded {ARTIFACT}"
    gaps = [b - a for (a, _), (b, _) in zip(lines, lines[1:], strict=False)]
    assert max(gaps) < 0.5 + 1.0 + 1.0  # heartbeat + report interval + slack: never silent


def test_a_download_reports_its_growing_file_and_goes_quiet_while_it_stops(
    tmp_path: Path,
) -> None:
    obj, data = _payload()
    (tmp_path / "store" / "metrics").mkdir(parents=True)
    (tmp_path / "store" / ARTIFACT).write_bytes(data)
    download = tmp_path / "download"
    download.mkdir()
    artifacts = FolderArtifacts(tmp_path / "store", size=len(data), download=download)
    artifacts.pause_after, artifacts.pause_seconds = 12, 3.0  # the transfer stops for 3 s
    progress, lines = _recorder(heartbeat_seconds=0)
    loaded, _ = load_pickle_artifact(
        artifacts, "metrics", ARTIFACT, MemoryGuard(None), progress.heartbeat
    )
    assert np.array_equal(loaded["auroc"], obj["auroc"])
    downloads = [(t, n) for t, n in lines if n.startswith(f"downloading {ARTIFACT}: ")]
    assert len(downloads) >= 3, lines
    total = f" of {len(data) / 1e6:.1f} MB"
    assert all(n.endswith(total) for _, n in downloads)
    amounts = [float(n.split(": ")[1].split(" of ")[0]) for _, n in downloads]
    assert amounts == sorted(amounts) and len(set(amounts)) == len(amounts)  # only on growth
    gaps = [b - a for (a, _), (b, _) in zip(downloads, downloads[1:], strict=False)]
    assert max(gaps) >= 2.5  # quiet while nothing arrived
    assert lines[0][1].startswith(f"loading {ARTIFACT}") and lines[-1][1] == f"loaded {ARTIFACT}"


def test_download_progress_reports_only_growth_and_stops_with_the_download(
    tmp_path: Path,
) -> None:
    (tmp_path / "earlier.bin").write_bytes(b"x" * 1000)  # an earlier download: not counted
    reports: list[int] = []
    with download_progress(tmp_path, reports.append, every_seconds=0.05):
        time.sleep(0.3)  # nothing arrives: no report
        assert reports == []
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "part").write_bytes(b"y" * 500)
        time.sleep(0.3)
    assert reports == [500]
    (tmp_path / "sub" / "late").write_bytes(b"z" * 10)
    time.sleep(0.2)
    assert reports == [500]  # the helper thread stopped with the download
