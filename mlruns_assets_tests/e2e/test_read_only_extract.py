"""``mlruns-assets extract`` never writes the tracking store: a folder that is not a tracking
store is refused (exit 2, one line, nothing created in it), and a current SQLite store is
byte-identical after a full extraction. The command runs in this process (``run_cli``)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from mlruns_assets.demo.store import write_demo_store
from mlruns_assets_tests.support.cli import run_cli
from mlruns_assets_tests.support.snapshots import changes, sha256, tree_snapshot


def _not_mlflow(folder: Path) -> None:
    (folder / "results").mkdir()
    (folder / "results" / "table.csv").write_text("run,auroc\nr1,0.8\n")
    (folder / "README.txt").write_text("a project folder, not an mlruns folder")


@pytest.mark.parametrize(
    ("fill", "refusal"),
    [
        (None, "is an empty folder, not an MLflow tracking store"),
        (
            _not_mlflow,
            "is not an MLflow tracking store (no experiment folder with a meta.yaml, such as "
            "0/meta.yaml)",
        ),
    ],
    ids=["empty", "not MLflow"],
)
def test_extract_refuses_a_folder_that_is_not_a_tracking_store(
    tmp_path: Path, fill: object, refusal: str
) -> None:
    folder = tmp_path / "mlruns"
    folder.mkdir()
    if callable(fill):
        fill(folder)
    before = tree_snapshot(folder)
    code, output = run_cli(
        "extract",
        "--tracking-uri",
        str(folder),
        "--db",
        str(tmp_path / "out" / "results.duckdb"),
        "--dagster-home",
        str(tmp_path / "out" / "home"),
    )
    assert code == 2, output
    assert output.strip().splitlines() == [
        f"mlruns-assets: error: tracking store {folder} {refusal}"
    ], output
    assert changes(before, tree_snapshot(folder)) == {}  # no .trash, no experiment 0
    assert not (folder / ".trash").exists()


def test_extract_leaves_a_current_sqlite_store_byte_identical(tmp_path: Path) -> None:
    demo = write_demo_store(tmp_path / "store", backend="sqlite", runs=2, bootstraps=20)
    db = Path(demo.tracking_uri.removeprefix("sqlite:///"))
    digest, before = sha256(db), tree_snapshot(db.parent)
    database = tmp_path / "results.duckdb"
    code, output = run_cli(
        "extract",
        "--tracking-uri",
        demo.tracking_uri,
        "--db",
        str(database),
        "--dagster-home",
        str(tmp_path / "home"),
        "--subject-map",
        str(demo.subject_map_path),
    )
    assert code == 0, output
    assert "failed 0" in output
    assert sha256(db) == digest
    assert changes(before, tree_snapshot(db.parent)) == {}  # no journal, no artifact touched
    with duckdb.connect(str(database), read_only=True) as conn:
        runs = {r for (r,) in conn.execute("SELECT run_id FROM classification.runs").fetchall()}
    assert runs == set(demo.good_run_ids)
