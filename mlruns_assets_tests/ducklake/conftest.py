"""DuckLake tests: a real DuckLake catalog in a throwaway Postgres on loopback, its extensions
loaded from the ``ducklake`` extra's wheels (DuckDB 1.5.5). Run by ``.ci/ducklake``; elsewhere
they skip, saying why, unless ``MLRUNS_ASSETS_TESTS_REQUIRE_DUCKLAKE`` is set (then they fail)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest

from mlruns_assets.demo.store import DemoStore, write_demo_store
from mlruns_assets.runtime.errors import UsageError
from mlruns_assets.warehouse import ducklake
from mlruns_assets_tests.support.cli import Extracted, run_extract
from mlruns_assets_tests.support.postgres import Postgres, loopback_postgres, postgres_missing

REQUIRED = bool(os.environ.get("MLRUNS_ASSETS_TESTS_REQUIRE_DUCKLAKE"))


def _unavailable() -> str | None:
    """Why DuckLake cannot run here, or None."""
    conn = duckdb.connect()
    try:
        for name in ("postgres_scanner", "ducklake"):
            ducklake.load_extension(conn, name, None)
    except UsageError as exc:
        return str(exc)
    finally:
        conn.close()
    return postgres_missing()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    why = _unavailable()
    if why is not None:
        if REQUIRED:
            pytest.fail(f"DuckLake tests required but cannot run: {why}")
        pytest.skip(f"DuckLake unavailable (run .ci/ducklake): {why}")
    with loopback_postgres() as cluster:
        yield cluster


@pytest.fixture
def new_warehouse(postgres: Postgres, tmp_path: Path) -> Callable[[], str]:
    """``--warehouse`` of a new, empty DuckLake catalog with its data in ``tmp_path``."""

    def make() -> str:
        name = f"lake_{uuid.uuid4().hex[:12]}"
        return postgres.warehouse(name, tmp_path / name)

    return make


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory, postgres: Postgres) -> DemoStore:
    """The demo store (classification and imputation experiments)."""
    return write_demo_store(tmp_path_factory.mktemp("demo") / "store")


@pytest.fixture(scope="session")
def file_extract(tmp_path_factory: pytest.TempPathFactory, demo: DemoStore) -> Extracted[DemoStore]:
    """The demo store extracted into one DuckDB file: the reference."""
    root = tmp_path_factory.mktemp("file_extract")
    extracted = run_extract(
        demo, root / "results.duckdb", root / "home", "--subject-map", str(demo.subject_map_path)
    )
    assert extracted.exit_code == 0, extracted.output
    return extracted


@pytest.fixture(scope="session")
def s3_bucket(postgres: Postgres) -> str:
    """A bucket on a moto S3 server on loopback (deploy/loopback.py's, stopped with Postgres);
    the AWS variables that reach it are set in this process."""
    import boto3

    postgres.stack.start_s3()
    endpoint = f"http://127.0.0.1:{postgres.stack.ports['s3']}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
        Bucket="ducklake"
    )
    return "ducklake"
