"""Reading an MLflow tracking store through MLflow's own client and artifact APIs.

Nothing here writes to the tracking store. A tracking URI is a legacy ``mlruns`` folder, a
``sqlite:///`` database or an ``http(s)://`` tracking server.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
from mlflow.entities import Run, ViewType
from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE
from mlflow.tracking import MlflowClient

from mlruns_assets.runtime.settings import (
    SYNTHETIC_EXPERIMENT_PREFIX,
    SYNTHETIC_NAME_PREFIX,
    SYNTHETIC_TAG,
    SYNTHETIC_TAG_VALUES,
)

_PAGE = 1000


class TrackingStoreError(RuntimeError):
    """The tracking store cannot be read (one-line message for the user)."""


def slugify(name: str) -> str:
    """The schema and asset-key prefix of an experiment: "Classification" -> ``classification``."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not slug:
        slug = "experiment"
    if slug[0].isdigit():
        slug = f"e_{slug}"
    return slug


def is_file_store(uri: str) -> bool:
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def normalize_tracking_uri(uri: str) -> str:
    """Check that the store exists (MLflow would create an empty one) and enable file stores.

    MLflow >= 3.14 refuses a file store unless ``MLFLOW_ALLOW_FILE_STORE=true``; we set it
    for the user because reading legacy ``mlruns`` folders is the point of this tool.
    """
    parsed = urlparse(uri)
    if is_file_store(uri):
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else uri).expanduser()
        if not path.is_dir():
            raise TrackingStoreError(f"tracking store {uri} is not an existing mlruns folder")
        # MLflow's own switch (it reads the environment when a store is opened).
        MLFLOW_ALLOW_FILE_STORE.set(True)  # type: ignore[no-untyped-call]
        return str(path.resolve())
    if parsed.scheme == "sqlite":
        db_path = Path(uri[len("sqlite:///") :])
        if not db_path.is_file():
            raise TrackingStoreError(f"tracking store {uri}: no such SQLite file {db_path}")
        return uri
    if parsed.scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10) as resp:
                resp.read()
        except OSError as exc:
            raise TrackingStoreError(f"tracking server {uri} is unreachable: {exc}") from exc
        return uri.rstrip("/")
    raise TrackingStoreError(f"unsupported tracking URI {uri} (use a folder, sqlite:/// or http)")


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


@dataclass(frozen=True)
class ExperimentRef:
    """An MLflow experiment as this project names it."""

    experiment_id: str
    name: str

    @property
    def slug(self) -> str:
        return slugify(self.name)


def exclusion_reason(
    run: Run, experiment_name: str, admitted_statuses: Iterable[str]
) -> str | None:
    """Why a run must not become a partition, or None when it should.

    Synthetic runs never reach a results database; RUNNING runs wait until they finish.
    """
    name = run.info.run_name or ""
    if (
        name.startswith(SYNTHETIC_NAME_PREFIX)
        or experiment_name.startswith(SYNTHETIC_EXPERIMENT_PREFIX)
        or run.data.tags.get(SYNTHETIC_TAG, "").strip().lower() in SYNTHETIC_TAG_VALUES
    ):
        return "synthetic"
    if run.info.lifecycle_stage == "deleted":
        return "deleted"
    if run.info.status not in set(admitted_statuses):
        return f"status {run.info.status}"
    return None


def run_version(run: Run) -> str:
    """A digest of what MLflow holds of a run, from the run listing alone (no artifact read):
    status, end time, params, tags and each metric's latest point (value, step, timestamp).
    A new metric point, a changed param or tag, a later end time change it; an artifact
    re-logged without touching the run record does not (see the README's checkpoint section).
    """
    proto = run.data.to_proto()
    parts = [
        run.info.status,
        str(run.info.end_time),
        *sorted(f"m|{m.key}|{m.value!r}|{m.step}|{m.timestamp}" for m in proto.metrics),
        *sorted(f"p|{p.key}|{p.value}" for p in proto.params),
        *sorted(f"t|{tag.key}|{tag.value}" for tag in proto.tags),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class TrackingStore:
    """A read-only view of one tracking store."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = normalize_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri=self.tracking_uri)

    def experiments(self, names: Iterable[str] | None = None) -> list[ExperimentRef]:
        """The named experiments (error for an unknown name), or every one that has runs."""
        try:
            found = {
                e.name: ExperimentRef(e.experiment_id, e.name)
                for e in self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY)
            }
        except Exception as exc:
            raise TrackingStoreError(
                f"cannot list experiments of {self.tracking_uri}: {exc}"
            ) from exc
        wanted = list(names or [])
        if wanted:
            unknown = [n for n in wanted if n not in found]
            if unknown:
                raise TrackingStoreError(
                    f"unknown experiment(s) {', '.join(unknown)}; "
                    f"the store has: {', '.join(sorted(found)) or 'none'}"
                )
            return [found[n] for n in wanted]
        return [e for e in found.values() if self._has_runs(e.experiment_id)]

    def _has_runs(self, experiment_id: str) -> bool:
        return bool(self.client.search_runs([experiment_id], max_results=1))

    def iter_runs(
        self,
        experiment_id: str,
        *,
        view_type: int = ViewType.ACTIVE_ONLY,
        filter_string: str = "",
        order_by: list[str] | None = None,
    ) -> Iterator[Run]:
        """Every run of an experiment, a page at a time."""
        token: str | None = None
        while True:
            page = self.client.search_runs(
                [experiment_id],
                filter_string=filter_string,
                run_view_type=view_type,
                max_results=_PAGE,
                order_by=order_by,
                page_token=token,
            )
            yield from page
            token = page.token
            if not token:
                return

    def runs_by_id(self, experiment_id: str, run_ids: list[str]) -> dict[str, Run]:
        """Runs of one experiment by id with one search per chunk (not a ``get_run`` each:
        the file store's ``get_run`` scans every experiment)."""
        out: dict[str, Run] = {}
        for start in range(0, len(run_ids), 200):
            chunk = run_ids[start : start + 200]
            quoted = ", ".join(f"'{r}'" for r in chunk)
            for run in self.iter_runs(
                experiment_id,
                view_type=ViewType.ALL,
                filter_string=f"attributes.run_id IN ({quoted})",
            ):
                out[run.info.run_id] = run  # bounded: the runs of one step's partition keys
        return out

    def metric_history(self, run: Run) -> MetricPoints:
        """Every logged point of every metric of the run, in key order."""
        points = MetricPoints()
        for key in sorted(run.data.metrics):
            for m in self.client.get_metric_history(run.info.run_id, key):
                points.add(key, m.step, m.timestamp, m.value)
        return points

    @contextmanager
    def artifacts(self, run: Run) -> Iterator[RunArtifacts]:
        """Access to one run's artifacts; downloaded copies are removed on exit."""
        tmp = None if is_file_store(run.info.artifact_uri) else tempfile.mkdtemp(prefix="mlra-")
        try:
            yield RunArtifacts(self.client, run, tmp)
        finally:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)


class RunArtifacts:
    """One run's artifacts. Local stores are read in place; remote ones are downloaded."""

    def __init__(self, client: MlflowClient, run: Run, download_dir: str | None) -> None:
        self.client = client
        self.run = run
        self.download_dir = download_dir

    def list(self, folder: str) -> list[tuple[str, int | None]]:
        """(artifact path, size in bytes) of the files directly inside ``folder``."""
        return [
            (f.path, f.file_size)
            for f in self.client.list_artifacts(self.run.info.run_id, folder)
            if not f.is_dir
        ]

    def local_path(self, artifact_path: str) -> Path:
        """A local file for the artifact: the stored file itself when the store is local."""
        uri = f"{self.run.info.artifact_uri.rstrip('/')}/{artifact_path}"
        if self.download_dir is None:
            parsed = urlparse(uri)
            return Path(unquote(parsed.path) if parsed.scheme == "file" else uri)
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=uri,
                dst_path=self.download_dir,
                # mlflow-artifacts: URIs resolve against this store, not the global URI.
                tracking_uri=self.client.tracking_uri,
            )
        )
