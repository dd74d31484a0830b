"""Reading an MLflow tracking store through MLflow's own client and artifact APIs.

Nothing here writes to the tracking store: every store is opened through
``source.read_only_store`` (checks before MLflow sees it, a read-only engine or a private copy)."""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Run, ViewType
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from mlruns_assets.runtime.errors import TrackingStoreError
from mlruns_assets.runtime.settings import (
    SYNTHETIC_EXPERIMENT_PREFIX,
    SYNTHETIC_NAME_PREFIX,
    SYNTHETIC_TAG,
    SYNTHETIC_TAG_VALUES,
)
from mlruns_assets.source.read_only_store import (
    StoreAccess,
    normalize_tracking_uri,
    open_store,
    reopen_store,
)
from mlruns_assets.source.run_data import (
    MetricPoints,
    RunLike,
    is_file_store,
    local_artifact_path,
)
from mlruns_assets.source.sqlite_copies import _SQLITE_COPIES

_PAGE = 1000


def slugify(name: str) -> str:
    """The schema and asset-key prefix of an experiment: "Classification" -> ``classification``."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not slug:
        slug = "experiment"
    if slug[0].isdigit():
        slug = f"e_{slug}"
    return slug


@dataclass(frozen=True)
class ExperimentRef:
    """An MLflow experiment as this project names it: its slug is its asset-key prefix and its
    DuckDB schema (``slugify(name)``, or with its id appended when another experiment of the
    store, created earlier, has the same slug: see ``unique_slugs``)."""

    experiment_id: str
    name: str
    slug: str = ""

    def __post_init__(self) -> None:
        if not self.slug:
            object.__setattr__(self, "slug", slugify(self.name))


def unique_slugs(experiments: Iterable[tuple[str, str, int]]) -> dict[str, str]:
    """Experiment id -> slug for (id, name, creation time) of every experiment of a store: the
    oldest experiment of a slug keeps it, later ones get ``<slug>_<id>``. Stable: adding an
    experiment never changes the slug (so the schema and asset keys) of an existing one."""
    by_slug: dict[str, list[tuple[int, str]]] = {}  # bounded: the store's experiments
    for experiment_id, name, created in experiments:
        by_slug.setdefault(slugify(name), []).append((created, experiment_id))
    slugs: dict[str, str] = {}  # bounded: likewise
    for slug, members in by_slug.items():
        ordered = sorted(members, key=lambda m: (m[0], _numeric_id(m[1])))
        for rank, (_, experiment_id) in enumerate(ordered):
            slugs[experiment_id] = slug if rank == 0 else f"{slug}_{experiment_id}"
    return slugs


def _numeric_id(experiment_id: str) -> tuple[int, str]:
    return (int(experiment_id), "") if experiment_id.isdigit() else (2**63, experiment_id)


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
    """A read-only view of one tracking store (see the module docstring for how).

    ``access`` says how MLflow reads it ("read-only", "temporary copy", "server", "file
    store") and ``access_detail`` why. ``close()`` (or leaving a ``with`` block, or the object
    being collected, or the process exiting) releases a temporary copy."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = normalize_tracking_uri(tracking_uri)
        opened = open_store(self.tracking_uri)
        self.client = opened.client
        self.access: StoreAccess = opened.access
        self.access_detail = opened.detail
        self.copy = opened.copy
        self._release = (
            weakref.finalize(self, _SQLITE_COPIES.release, opened.copy) if opened.copy else None
        )

    @classmethod
    def reopened(cls, client_uri: str) -> TrackingStore:
        """The store a parent process opened, in one of its worker processes (``client_uri``
        is the parent's ``client.tracking_uri``; see ``reopen_store``)."""
        store = cls.__new__(cls)
        store.tracking_uri = client_uri
        store.client = reopen_store(client_uri)
        store.access, store.access_detail = "reopened", "in a worker process"
        store.copy, store._release = None, None
        return store

    def close(self) -> None:
        """Release the temporary copy, if any (removed when no other store uses it)."""
        if self._release is not None:
            self._release()

    def __enter__(self) -> TrackingStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def experiments(self, names: Iterable[str] | None = None) -> list[ExperimentRef]:
        """The named experiments (error for an unknown name), or every one that has runs."""
        try:
            listed = self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY)
            slugs = unique_slugs((e.experiment_id, e.name, e.creation_time or 0) for e in listed)
            found = {
                e.name: ExperimentRef(e.experiment_id, e.name, slugs[e.experiment_id])
                for e in listed
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

    def metric_history(self, run: RunLike) -> MetricPoints:
        """Every logged point of every metric of the run, in key order."""
        points = MetricPoints()
        for key in sorted(run.data.metrics):
            for m in self.client.get_metric_history(run.info.run_id, key):
                points.add(key, m.step, m.timestamp, m.value)
        return points

    @property
    def reads_histories_in_bulk(self) -> bool:
        """Whether ``metric_histories`` reads several runs at once (an SQL store)."""
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        return isinstance(self.client._tracking_client.store, SqlAlchemyStore)

    def metric_histories(self, runs: Sequence[Run]) -> dict[str, MetricPoints] | None:
        """The metric histories of several runs in one query, when the store is an SQL
        database read through MLflow's own SQL store and models; None for other stores (file
        stores, servers: ``metric_history`` per run). ``metric_history`` makes one query per
        run and metric key; both give the same points in the same order."""
        from mlflow.store.tracking.dbmodels.models import SqlMetric

        store = self.client._tracking_client.store
        if not self.reads_histories_in_bulk or not runs:
            return None
        by_run: dict[str, dict[str, list[Metric]]] = {r.info.run_id: {} for r in runs}
        with store.ManagedSessionMaker() as session:
            query = (
                session.query(SqlMetric)
                .filter(SqlMetric.run_uuid.in_(list(by_run)))
                .order_by(SqlMetric.timestamp, SqlMetric.step, SqlMetric.value)
            )
            for row in query.yield_per(10_000):  # bounded: the histories of the given runs
                by_run[row.run_uuid].setdefault(row.key, []).append(  # bounded: given runs
                    row.to_mlflow_entity()
                )
        histories = {}
        for run_id, by_key in by_run.items():
            points = histories[run_id] = MetricPoints()  # bounded: the given runs
            for key in sorted(by_key):
                for m in by_key[key]:
                    points.add(key, m.step, m.timestamp, m.value)
        return histories

    @contextmanager
    def artifacts(self, run: RunLike) -> Iterator[RunArtifacts]:
        """Access to one run's artifacts; downloaded copies are removed on exit."""
        tmp = None if is_file_store(run.info.artifact_uri) else tempfile.mkdtemp(prefix="mlra-")
        try:
            yield RunArtifacts(self.client, run, tmp)
        finally:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)


class RunArtifacts:
    """One run's artifacts. Local stores are read in place; remote ones are downloaded."""

    def __init__(self, client: MlflowClient, run: RunLike, download_dir: str | None) -> None:
        self.client = client
        self.run = run
        self.download_dir = download_dir

    def list(self, folder: str) -> list[tuple[str, int | None]]:
        """(artifact path, size in bytes) of the files directly inside ``folder``.

        Listed from the run's own artifact URI: ``client.list_artifacts`` resolves a
        ``runs:/`` URI first, a ``get_run`` and a logged-model lookup per call, to find the
        URI the run record already holds."""
        repository = get_artifact_repository(
            self.run.info.artifact_uri, tracking_uri=self.client.tracking_uri
        )
        return [(f.path, f.file_size) for f in repository.list_artifacts(folder) if not f.is_dir]

    def local_path(self, artifact_path: str) -> Path:
        """A local file for the artifact: the stored file itself when the store is local."""
        if self.download_dir is None:
            return local_artifact_path(self.run.info.artifact_uri, artifact_path)
        uri = f"{self.run.info.artifact_uri.rstrip('/')}/{artifact_path}"
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=uri,
                dst_path=self.download_dir,
                # mlflow-artifacts: URIs resolve against this store, not the global URI.
                tracking_uri=self.client.tracking_uri,
            )
        )
