"""Shared fixtures: real MLflow demo stores on disk, extracted once per session."""

from __future__ import annotations

import pytest

from mlruns_assets_tests.support.bad_runs import BadDemoStore, write_bad_demo_store
from mlruns_assets_tests.support.cli import Extracted, run_extract


@pytest.fixture(scope="session")
def bad_store_extracted(tmp_path_factory: pytest.TempPathFactory) -> Extracted[BadDemoStore]:
    """The demo store with every kind of bad run (SQLite backend), extracted with a subject map."""
    root = tmp_path_factory.mktemp("bad_store")
    store = write_bad_demo_store(root / "store", backend="sqlite", runs=8, bootstraps=40)
    return run_extract(
        store, root / "results.duckdb", root / "home", "--subject-map", str(store.subject_map_path)
    )
