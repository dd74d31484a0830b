"""Without the DuckLake extensions (the default environment, DuckDB 2, no extension repository
in reach) a DuckLake warehouse is refused in one line naming the extension and every place
looked in, exit 2; nothing is written."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from mlruns_assets.runtime.errors import UsageError
from mlruns_assets.warehouse import ducklake
from mlruns_assets_tests.support.cli import run_cli


def test_a_missing_extension_is_one_line_naming_where_it_was_looked_for(tmp_path: Path) -> None:
    try:
        with duckdb.connect() as conn:
            ducklake.load_extension(conn, "postgres_scanner", str(tmp_path))
    except UsageError:
        pass
    else:
        pytest.skip("the extension loads here (the ducklake extra, or DuckDB's repository)")
    data = tmp_path / "data"
    warehouse = f"ducklake:postgres:dbname=lake host=127.0.0.1?data_path={data}"
    folder = ["--duckdb-extensions", str(tmp_path)]
    for args in (
        ["check", "--warehouse", warehouse, *folder],
        ["export", "--warehouse", warehouse, "--out", str(tmp_path / "out.duckdb")],
    ):
        code, output = run_cli(*args)
        lines = output.strip().splitlines()
        assert code == 2 and len(lines) == 1, output
        message = lines[0]
        assert message.startswith("mlruns-assets: error: DuckDB extension 'postgres_scanner'")
        assert "wheel for DuckDB" in message and "INSTALL failed" in message
        assert (f"not in {tmp_path}" in message) == (folder[0] in args)
    assert not (tmp_path / "out.duckdb").exists()
