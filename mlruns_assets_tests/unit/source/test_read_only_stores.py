"""Opening tracking stores without ever writing them (``source.tracking``): the schema check of
SQLite stores and database servers, the read-only engine, temporary copies, and file stores
without ``.trash``. Real MLflow stores written by the demo writer; every test proves the store
unchanged with a snapshot of its files (path, mtime, size, sha256).

Database servers: no Postgres or MySQL runs here, so the server check
(``check_database_schema``) is tested on a SQLite engine carrying MLflow's tables and an
``alembic_version``; a ``postgresql://`` URI is only checked up to the missing driver."""

from __future__ import annotations

import gc
import shutil
import sqlite3
import tempfile
from pathlib import Path

import mlflow
import pytest
import sqlalchemy
from mlflow.store.db.utils import _get_latest_schema_revision

from mlruns_assets.demo.store import DemoStore, write_demo_store
from mlruns_assets.runtime.errors import TrackingStoreError
from mlruns_assets.source.read_only_store import check_file_store
from mlruns_assets.source.store_schema import (
    check_database_schema,
    installed_schema_head,
    revision_graph,
    schema_relation,
    sqlite_schema_revision,
)
from mlruns_assets.source.tracking import TrackingStore
from mlruns_assets_tests.support.snapshots import changes, tree_snapshot

MLFLOW_2_17_HEAD = "f5a4f2784254"
NEWER = "ffffffffffff"


@pytest.fixture(autouse=True)
def private_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temporary copies go to a folder of this test only, so that what is left can be seen."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture(scope="module")
def sqlite_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    return write_demo_store(
        tmp_path_factory.mktemp("ro_sqlite") / "store", backend="sqlite", runs=2, bootstraps=20
    )


@pytest.fixture(scope="module")
def file_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    return write_demo_store(
        tmp_path_factory.mktemp("ro_file") / "store", backend="file", runs=2, bootstraps=20
    )


def _db(demo: DemoStore) -> Path:
    return Path(demo.tracking_uri.removeprefix("sqlite:///"))


def _private_sqlite(demo: DemoStore, folder: Path) -> Path:
    """A copy of the demo database (its artifact URIs still point to the demo's artifacts)."""
    folder.mkdir()
    shutil.copy2(_db(demo), folder / "mlflow.db")
    return folder / "mlflow.db"


def _set_revision(db: Path, revision: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    conn.close()


def _read_everything(store: TrackingStore) -> dict[str, int]:
    """Every read the extraction does: experiments, runs (listed and by id), metric histories,
    artifact listings and the artifact files themselves. Returns run id -> metric points."""
    points: dict[str, int] = {}
    for experiment in store.experiments():
        runs = list(store.iter_runs(experiment.experiment_id))
        by_id = store.runs_by_id(experiment.experiment_id, [r.info.run_id for r in runs])
        assert set(by_id) == {r.info.run_id for r in runs}
        for run in runs:
            points[run.info.run_id] = len(store.metric_history(run).values)
            with store.artifacts(run) as artifacts:
                for folder in ("", "metrics"):
                    for path, _size in artifacts.list(folder):
                        artifacts.local_path(path).read_bytes()
    assert points, "the store has runs"
    return points


# --------------------------------------------------------------------------- schema revisions


def test_the_revision_graph_is_alembics() -> None:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(Path(mlflow.__file__).parent / "store" / "db_migrations"))
    alembic_graph = {s.revision: s.down_revision for s in scripts.walk_revisions()}
    assert revision_graph() == alembic_graph and len(alembic_graph) > 50


def test_the_installed_head_is_mlflows_own() -> None:
    assert installed_schema_head() == _get_latest_schema_revision()
    assert schema_relation(installed_schema_head()) == "current"
    assert schema_relation(MLFLOW_2_17_HEAD) == "older"
    assert schema_relation(NEWER) == "newer"


def _server_like_database(path: Path, revision: str | None, *, default: bool = True) -> str:
    """A SQLite file shaped like an MLflow database server: ``experiments`` and, unless None,
    ``alembic_version`` holding ``revision``."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name TEXT)")
        if default:
            conn.execute("INSERT INTO experiments VALUES (0, 'Default')")
        if revision is not None:
            conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
            conn.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
    conn.close()
    return f"sqlite:///{path}"


@pytest.mark.parametrize(
    ("revision", "default", "refusal"),
    [
        (MLFLOW_2_17_HEAD, True, rf"revision {MLFLOW_2_17_HEAD}, older .* never migrates"),
        (NEWER, True, rf"revision {NEWER}, newer .* upgrade the MLflow of mlruns-assets"),
        (None, True, "not an MLflow tracking database"),
        ("head", False, "no default experiment"),
        ("head", True, None),
    ],
    ids=["older", "newer", "no alembic_version", "no default experiment", "current"],
)
def test_a_database_server_at_another_revision_is_refused_unchanged(
    tmp_path: Path, revision: str | None, default: bool, refusal: str | None
) -> None:
    db = tmp_path / "server.db"
    head = installed_schema_head()
    uri = _server_like_database(db, head if revision == "head" else revision, default=default)
    before = tree_snapshot(tmp_path)
    engine = sqlalchemy.create_engine(uri)
    try:
        if refusal is None:
            check_database_schema(engine, "postgresql://lab/mlflow")
        else:
            with pytest.raises(TrackingStoreError, match=refusal) as caught:
                check_database_schema(engine, "postgresql://lab/mlflow")
            assert "\n" not in str(caught.value)
            assert "postgresql://lab/mlflow" in str(caught.value)
    finally:
        engine.dispose()
    assert changes(before, tree_snapshot(tmp_path)) == {}


def test_a_server_uri_is_checked_before_mlflow_opens_it_and_hides_the_password() -> None:
    # No Postgres driver is installed here: the check fails before MLflow is involved.
    with pytest.raises(TrackingStoreError) as caught:
        TrackingStore("postgresql://lab:secret@127.0.0.1:1/mlflow")
    message = str(caught.value)
    assert "secret" not in message and "postgresql://lab:***@127.0.0.1:1/mlflow" in message
    assert "\n" not in message


# --------------------------------------------------------------------------- SQLite stores


@pytest.mark.parametrize(
    ("content", "refusal"),
    [
        (b"", "is an empty file"),
        (b"experiment,run\n", "is not an SQLite database"),
        ("plain sqlite", "is not an MLflow tracking store .no such table: alembic_version"),
    ],
    ids=["empty file", "text file", "other SQLite database"],
)
def test_sqlite_files_that_are_not_mlflow_stores_are_refused_unchanged(
    tmp_path: Path, content: bytes | str, refusal: str
) -> None:
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    if isinstance(content, bytes):
        db.write_bytes(content)
    else:
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE results (run TEXT)")
        conn.close()
    before = tree_snapshot(db.parent)
    with pytest.raises(TrackingStoreError, match=refusal) as caught:
        TrackingStore(f"sqlite:///{db}")
    assert "\n" not in str(caught.value) and str(db) in str(caught.value)
    assert changes(before, tree_snapshot(db.parent)) == {}  # MLflow would have made its tables


def test_a_current_sqlite_store_is_read_through_a_read_only_engine(
    sqlite_demo: DemoStore, private_tmpdir: Path
) -> None:
    folder = _db(sqlite_demo).parent
    before = tree_snapshot(folder)
    with TrackingStore(sqlite_demo.tracking_uri) as store:
        assert store.access == "read-only" and store.copy is None
        assert sqlite_schema_revision(_db(sqlite_demo)) == installed_schema_head()
        points = _read_everything(store)
        assert set(points) >= set(sqlite_demo.good_run_ids)
        with pytest.raises(Exception, match="readonly database"):
            store.client.create_experiment("never written")
    assert changes(before, tree_snapshot(folder)) == {}
    assert list(private_tmpdir.iterdir()) == []  # no copy was made


def test_a_newer_schema_is_refused_in_one_line_and_its_copy_removed(
    sqlite_demo: DemoStore, tmp_path: Path, private_tmpdir: Path
) -> None:
    db = _private_sqlite(sqlite_demo, tmp_path / "newer")
    _set_revision(db, NEWER)
    before = tree_snapshot(db.parent)
    with pytest.raises(TrackingStoreError) as caught:
        TrackingStore(f"sqlite:///{db}")
    message = str(caught.value)
    assert "\n" not in message
    assert f"schema revision {NEWER}, newer than the installed MLflow" in message
    assert "upgrade the MLflow of mlruns-assets" in message
    assert changes(before, tree_snapshot(db.parent)) == {}
    assert list(private_tmpdir.iterdir()) == []  # the copy MLflow failed on is gone


def _to_wal(db: Path) -> None:
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    conn.close()  # the last connection: SQLite removes -wal and -shm


def test_a_wal_store_nobody_has_open_is_read_through_a_copy_that_is_removed(
    sqlite_demo: DemoStore, tmp_path: Path, private_tmpdir: Path
) -> None:
    """Opening a WAL database, even ``mode=ro``, creates its -wal and -shm files."""
    db = _private_sqlite(sqlite_demo, tmp_path / "wal")
    _to_wal(db)
    assert sorted(p.name for p in db.parent.iterdir()) == ["mlflow.db"]
    before = tree_snapshot(db.parent)
    with TrackingStore(f"sqlite:///{db}") as store:
        assert store.access == "temporary copy" and store.copy is not None
        assert "WAL database nobody has open" in store.access_detail
        copy = store.copy.folder
        assert copy.parent == private_tmpdir and (copy.stat().st_mode & 0o077) == 0
        assert set(_read_everything(store)) >= set(sqlite_demo.good_run_ids)
    assert not copy.exists()
    assert changes(before, tree_snapshot(db.parent)) == {}


def test_a_wal_store_a_writer_has_open_is_read_in_place_and_sees_new_runs(
    sqlite_demo: DemoStore, tmp_path: Path, private_tmpdir: Path
) -> None:
    db = _private_sqlite(sqlite_demo, tmp_path / "live")
    _to_wal(db)
    writer = mlflow.MlflowClient(f"sqlite:///{db}")
    experiment = writer.create_experiment("Live")
    with TrackingStore(f"sqlite:///{db}") as store:
        assert store.access == "read-only"
        assert [r.info.run_id for r in store.iter_runs(experiment)] == []
        run = writer.create_run(experiment).info.run_id
        assert [r.info.run_id for r in store.iter_runs(experiment)] == [run]
    assert list(private_tmpdir.iterdir()) == []


def test_copies_are_shared_by_the_stores_of_a_process_and_removed_by_the_last(
    sqlite_demo: DemoStore, tmp_path: Path, private_tmpdir: Path
) -> None:
    db = _private_sqlite(sqlite_demo, tmp_path / "shared")
    _to_wal(db)
    first, second = TrackingStore(f"sqlite:///{db}"), TrackingStore(f"sqlite:///{db}")
    assert first.copy is not None and first.copy is second.copy
    folder = first.copy.folder
    first.close()
    assert folder.exists() and second.experiments()
    del second  # never closed: collecting it releases the copy
    gc.collect()
    assert not folder.exists()
    assert list(private_tmpdir.iterdir()) == []


# --------------------------------------------------------------------------- file stores


@pytest.mark.parametrize("with_trash", [True, False], ids=["with .trash", "without .trash"])
def test_reading_a_file_store_writes_nothing(
    file_demo: DemoStore, tmp_path: Path, with_trash: bool
) -> None:
    """The demo file store itself; and a copy without ``.trash`` (as a tool that drops empty
    folders leaves it), which MLflow's FileStore would create on opening. The copy's runs still
    point to the demo's artifacts: both folders must stay as they are."""
    demo_folder = Path(file_demo.tracking_uri).parent
    root = Path(file_demo.tracking_uri)
    if not with_trash:
        root = tmp_path / "mlruns"
        shutil.copytree(file_demo.tracking_uri, root)
        (root / ".trash").rmdir()
    before = tree_snapshot(demo_folder), tree_snapshot(root)
    with TrackingStore(str(root)) as store:
        assert store.access == "file store"
        points = _read_everything(store)
    assert set(points) >= set(file_demo.good_run_ids) and all(points.values())
    after = tree_snapshot(demo_folder), tree_snapshot(root)
    assert changes(before[0], after[0]) == {} and changes(before[1], after[1]) == {}
    assert (root / ".trash").exists() is with_trash


def test_folders_that_are_not_file_stores_are_refused_unchanged(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TrackingStoreError, match=f"{empty} is an empty folder"):
        TrackingStore(str(empty))
    assert list(empty.iterdir()) == []

    other = tmp_path / "other"
    (other / "data").mkdir(parents=True)
    (other / "data" / "meta.yaml").write_text("owner: someone else\n")  # no experiment_id
    (other / "notes.txt").write_text("not MLflow")
    before = tree_snapshot(other)
    with pytest.raises(TrackingStoreError, match=f"{other} is not an MLflow tracking store"):
        TrackingStore(str(other))
    assert changes(before, tree_snapshot(other)) == {}


def test_a_store_whose_experiments_are_all_deleted_is_still_a_store(tmp_path: Path) -> None:
    (tmp_path / ".trash" / "1").mkdir(parents=True)
    (tmp_path / ".trash" / "1" / "meta.yaml").write_text("experiment_id: '1'\nname: Old\n")
    check_file_store(tmp_path)
