"""``extract`` into a DuckLake warehouse end to end: the same rows as a single DuckDB file, the
checkpoint (a rerun extracts nothing), two extract processes writing at once, ``export`` to one
file that ``check`` passes, and bad warehouses refused in one line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from mlruns_assets.demo.store import DemoStore
from mlruns_assets_tests.support.cli import Extracted, run_cli
from mlruns_assets_tests.support.postgres import Postgres, loopback

pytestmark = pytest.mark.ducklake


def _extract(demo: DemoStore, warehouse: str, home: Path, *extra: str) -> list[str]:
    return [
        "extract",
        "--tracking-uri",
        demo.tracking_uri,
        "--warehouse",
        warehouse,
        "--dagster-home",
        str(home),
        "--subject-map",
        str(demo.subject_map_path),
        *extra,
    ]


def _export(warehouse: str, out: Path) -> None:
    code, output = run_cli("export", "--warehouse", warehouse, "--out", str(out))
    assert code == 0, output


def _same_rows(exported: Path, reference: Path) -> tuple[int, int]:
    """(tables, rows) after asserting every table's rows equal the reference's as multisets
    (``extracted_at`` aside) and no run's rows are duplicated."""
    tables, rows, differing, duplicated = loopback().compare(exported, reference)
    assert (differing, duplicated) == (0, 0)
    return tables, rows


def _database_id(path: Path) -> str:
    with duckdb.connect(str(path), read_only=True) as conn:
        row = conn.execute("SELECT database_id FROM main.mlruns_assets_database").fetchone()
    assert row is not None
    return str(row[0])


def test_extract_into_ducklake_equals_a_file_and_the_checkpoint_holds(
    demo: DemoStore,
    file_extract: Extracted[DemoStore],
    new_warehouse: Callable[[], str],
    tmp_path: Path,
) -> None:
    warehouse = new_warehouse()
    partitions = len(demo.good_run_ids) + len(demo.imputation_run_ids)
    status = ["status", *_extract(demo, warehouse, tmp_path / "home")[1:]]
    code, output = run_cli(*status)  # a catalog not created yet: everything to do
    assert code == 0 and f"{partitions} to extract, 0 up to date" in output, output
    code, output = run_cli(*_extract(demo, warehouse, tmp_path / "home"))
    assert code == 0, output
    assert f"materialized {partitions}, skipped 0" in output, output
    assert "password" not in output

    # The checkpoint: status vouches for rows that really are in the catalog.
    code, output = run_cli(*_extract(demo, warehouse, tmp_path / "home"))
    assert code == 0, output
    assert f"materialized 0, skipped {partitions} (up to date)" in output, output

    code, output = run_cli("check", "--warehouse", warehouse, "--subject-map",
                           str(demo.subject_map_path))  # fmt: skip
    assert code == 0, output

    html = tmp_path / "report.html"
    code, output = run_cli("report", "--warehouse", warehouse, "--out", str(html))
    assert code == 0 and html.stat().st_size > 0, output

    out = tmp_path / "results.duckdb"
    _export(warehouse, out)
    tables, rows = _same_rows(out, file_extract.database)
    assert tables >= 10 and rows > 0
    code, output = run_cli("check", "--db", str(out), "--subject-map", str(demo.subject_map_path))
    assert code == 0, output
    # A copy is a database of its own: status recorded against the warehouse never vouches
    # for it.
    assert _database_id(out) != _database_id(file_extract.database)


def test_two_extract_processes_write_different_experiments_at_once(
    demo: DemoStore,
    file_extract: Extracted[DemoStore],
    new_warehouse: Callable[[], str],
    tmp_path: Path,
) -> None:
    warehouse = new_warehouse()
    home = tmp_path / "home"
    # The shared Dagster instance exists first, as a user's would (two processes creating a
    # SQLite instance at once race in its schema migrations).
    code, output = run_cli("status", *_extract(demo, warehouse, home)[1:])
    assert code == 0, output
    procs = []
    for experiment in (demo.classification_experiment, demo.imputation_experiment):
        log = (tmp_path / f"{experiment}.log").open("wb")
        args = _extract(demo, warehouse, home, "--experiment", experiment)
        procs.append(
            (
                subprocess.Popen(
                    [sys.executable, "-m", "mlruns_assets.cli", *args],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ),
                log,
            )  # fmt: skip
        )
    outputs = []
    for proc, log in procs:
        try:
            proc.wait(timeout=400)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
        outputs.append(Path(log.name).read_text())
    assert [p.returncode for p, _ in procs] == [0, 0], [o[-3000:] for o in outputs]
    assert f"materialized {len(demo.good_run_ids)}, skipped 0" in outputs[0]
    assert f"materialized {len(demo.imputation_run_ids)}, skipped 0" in outputs[1]

    out = tmp_path / "results.duckdb"
    _export(warehouse, out)
    _same_rows(out, file_extract.database)
    code, output = run_cli(*_extract(demo, warehouse, home))
    assert "materialized 0, skipped" in output, output


def test_a_bad_warehouse_is_one_line_naming_it_and_exit_2(
    demo: DemoStore, postgres: Postgres, tmp_path: Path
) -> None:
    port = loopback().free_port()  # nothing listens there
    bad = {
        f"ducklake:postgres:dbname=lake host=127.0.0.1 port={port} user=postgres"
        f"?data_path={tmp_path / 'data'}": "DuckLake catalog ducklake:postgres:dbname=lake",
        "ducklake:sqlite:lake.db?data_path=x": "DuckLake catalog 'sqlite' is not supported",
        f"ducklake:postgres:{postgres.dsn('postgres')}": "needs its data path",
        "duckdb:http://example.org/x.duckdb": "not a file path",
    }
    for warehouse, expected in bad.items():
        code, output = run_cli(*_extract(demo, warehouse, tmp_path / "home"))
        lines = output.strip().splitlines()
        assert code == 2, output
        assert len(lines) == 1 and lines[0].startswith("mlruns-assets: error: "), output
        assert expected in lines[0], lines[0]
    code, output = run_cli("check", "--warehouse", next(iter(bad)))
    assert code == 2 and "DuckLake catalog" in output, output


def test_extract_with_the_data_on_s3_equals_a_file(
    demo: DemoStore,
    file_extract: Extracted[DemoStore],
    postgres: Postgres,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    import boto3

    warehouse = postgres.warehouse(f"lake_s3_{tmp_path.name[-8:]}", tmp_path)
    warehouse = warehouse.split("?data_path=")[0] + f"?data_path=s3://{s3_bucket}/lake/"
    code, output = run_cli(*_extract(demo, warehouse, tmp_path / "home"))
    assert code == 0, output
    endpoint = f"http://127.0.0.1:{postgres.stack.ports['s3']}"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    listed = s3.list_objects_v2(Bucket=s3_bucket, Prefix="lake/")
    assert any(o["Key"].endswith(".parquet") for o in listed.get("Contents", [])), listed
    out = tmp_path / "results.duckdb"
    _export(warehouse, out)
    _same_rows(out, file_extract.database)
