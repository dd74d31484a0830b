"""A run as plain data, and its artifacts when they are local files: what an extraction worker
process needs, without importing MLflow.

MLflow costs ~3 s and ~150 MB to import (``import mlflow`` loads pandas, its GenAI modules and
more). A worker that only unpickles a local artifact and builds tables needs none of it: the
parent hands it a ``RunRecord`` (the fields the tables are built from) and the worker reads the
artifact where the run's artifact URI says it is. Remote artifact stores still go through
MLflow (``source.tracking``), imported by the worker only when it meets one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse
from urllib.request import url2pathname


@dataclass
class MetricPoints:
    """A run's logged metric points as columns (one run's history: bounded by the run)."""

    keys: list[str] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    timestamps_ms: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add(self, key: str, step: int, timestamp_ms: int, value: float) -> None:
        self.keys.append(key)  # bounded: the logged points of one run
        self.steps.append(step)  # bounded: likewise
        self.timestamps_ms.append(timestamp_ms)  # bounded: likewise
        self.values.append(value)  # bounded: likewise


class RunInfoLike(Protocol):
    """What the tables read of ``mlflow.entities.RunInfo``."""

    @property
    def run_id(self) -> str: ...
    @property
    def run_name(self) -> str | None: ...
    @property
    def experiment_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def start_time(self) -> int | None: ...
    @property
    def end_time(self) -> int | None: ...
    @property
    def artifact_uri(self) -> str: ...


class RunDataLike(Protocol):
    """What the tables read of ``mlflow.entities.RunData``."""

    @property
    def params(self) -> Mapping[str, str]: ...
    @property
    def tags(self) -> Mapping[str, str]: ...
    @property
    def metrics(self) -> Mapping[str, float]: ...


class RunLike(Protocol):
    """An MLflow ``Run`` or a ``RunRecord``."""

    @property
    def info(self) -> RunInfoLike: ...
    @property
    def data(self) -> RunDataLike: ...


class ArtifactAccess(Protocol):
    """One run's artifacts: listed by folder and opened as local files (``download_dir``:
    where a remote store's files are downloaded to, None when they are read in place)."""

    @property
    def run(self) -> RunLike: ...
    @property
    def download_dir(self) -> str | None: ...
    def list(self, folder: str) -> list[tuple[str, int | None]]: ...
    def local_path(self, artifact_path: str) -> Path: ...


class RunReader(Protocol):
    """Reads what a run's extraction needs besides the run record (``TrackingStore``, or
    ``LocalRunReader`` in a worker process)."""

    def artifacts(self, run: RunLike) -> AbstractContextManager[ArtifactAccess]: ...
    def metric_history(self, run: RunLike) -> MetricPoints: ...


@dataclass(frozen=True)
class RecordInfo:
    run_id: str
    run_name: str | None
    experiment_id: str
    status: str
    start_time: int | None
    end_time: int | None
    artifact_uri: str


@dataclass(frozen=True)
class RecordData:
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, float]


@dataclass(frozen=True)
class RunRecord:
    """The fields of an MLflow run that its tables are built from, as plain data (pickled to
    a worker process without importing MLflow there)."""

    info: RecordInfo
    data: RecordData

    @classmethod
    def of(cls, run: RunLike) -> RunRecord:
        i, d = run.info, run.data
        return cls(
            RecordInfo(
                i.run_id,
                i.run_name,
                i.experiment_id,
                i.status,
                i.start_time,
                i.end_time,
                i.artifact_uri,
            ),
            RecordData(dict(d.params), dict(d.tags), dict(d.metrics)),
        )


def is_file_store(uri: str) -> bool:
    """Whether ``uri`` names local files (a path or ``file:``)."""
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def local_artifact_root(artifact_uri: str) -> Path:
    """The folder of a local artifact URI, converted as MLflow converts it
    (``mlflow.utils.file_utils.local_file_uri_to_path``: the standard library's
    ``url2pathname``, a Windows UNC host kept)."""
    path = artifact_uri
    if artifact_uri.startswith("file:"):
        parsed = urlparse(artifact_uri)
        path = parsed.path
        if os.name == "nt" and parsed.netloc:
            return Path(url2pathname(rf"\\{parsed.netloc}{path}"))
    return Path(url2pathname(path))


def local_artifact_path(artifact_uri: str, artifact_path: str) -> Path:
    """The local file of an artifact of a run whose artifact URI is local."""
    return local_artifact_root(artifact_uri) / artifact_path


# MLflow's local repository hides files it is still writing (``local_artifact_repo.py``).
UPLOADING_PREFIX = ".artifact.uploading."


class LocalRunArtifacts:
    """One run's artifacts in a local folder, read in place and listed as MLflow's local
    artifact repository lists them (``RunArtifacts`` reads the same files through it)."""

    download_dir: str | None = None  # nothing is downloaded

    def __init__(self, run: RunLike) -> None:
        self.run = run

    def list(self, folder: str) -> list[tuple[str, int | None]]:
        """(artifact path, size in bytes) of what is directly inside ``folder`` and is not a
        folder (a FIFO or a dangling link too: reading it then names the problem), in path
        order; nothing when the folder does not exist."""
        try:
            entries = list(os.scandir(local_artifact_path(self.run.info.artifact_uri, folder)))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(
            (f"{folder}/{e.name}", _size(e))
            for e in entries
            if not e.is_dir() and not e.name.startswith(UPLOADING_PREFIX)
        )

    def local_path(self, artifact_path: str) -> Path:
        return local_artifact_path(self.run.info.artifact_uri, artifact_path)


def _size(entry: os.DirEntry[str]) -> int | None:
    try:
        return entry.stat().st_size
    except OSError:  # a dangling link: listed, and reading it names the cause
        return None


class LocalRunReader:
    """Reads runs whose artifacts are local files and whose metric history the caller has
    already read (an extraction worker's reader for such runs)."""

    @contextmanager
    def artifacts(self, run: RunLike) -> Iterator[LocalRunArtifacts]:
        yield LocalRunArtifacts(run)

    def metric_history(self, run: RunLike) -> MetricPoints:
        raise RuntimeError(f"run {run.info.run_id}: the metric history must be read beforehand")
