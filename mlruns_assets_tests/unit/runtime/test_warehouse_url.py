"""``--warehouse``: a DuckDB file or a DuckLake catalog, one meaning for the command line, the
settings from the environment (the UI) and the resource."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlruns_assets.runtime.settings import Settings
from mlruns_assets.runtime.warehouse_url import parse_warehouse

LAKE = "ducklake:postgres:dbname=lake host=db password=s3cret?data_path=/data/lake"


def test_a_file_and_a_ducklake_catalog_parse() -> None:
    assert parse_warehouse("duckdb:/r/results.duckdb").path == "/r/results.duckdb"
    assert parse_warehouse("results.duckdb").path == "results.duckdb"
    url = parse_warehouse(LAKE)
    assert (url.catalog, url.data_path) == ("dbname=lake host=db password=s3cret", "/data/lake")
    assert url.anchor == Path("/data/lake")
    assert "s3cret" not in str(url) and "password=***" in str(url)
    on_s3 = parse_warehouse("ducklake:postgres:postgresql://u:pw@db/lake?data_path=s3://b/p")
    assert on_s3.data_on_s3 and "pw" not in str(on_s3) and on_s3.anchor == Path("ducklake")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ducklake:sqlite:x.db?data_path=/d", "'sqlite' is not supported"),
        ("ducklake:postgres:dbname=lake", "needs its data path"),
        ("ducklake:postgres:?data_path=/d", "no Postgres connection string"),
        ("duckdb:s3://bucket/x.duckdb", "not a file path"),
        ("ducklake:postgres:dbname=x?data_path=http://h/p", "give a folder or s3://"),
    ],
)
def test_a_bad_warehouse_says_what_is_wrong(text: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        parse_warehouse(text)


def test_the_settings_carry_the_warehouse_to_the_ui_and_back() -> None:
    settings = Settings(tracking_uri="sqlite:///m.db", database="", warehouse=LAKE)
    assert settings.database == "/data/lake"  # Dagster home and private folder go beside it
    assert settings.private_folder == "/data/private"
    again = Settings.from_env(settings.to_env())
    assert again is not None and again.warehouse_url == settings.warehouse_url
    only_url = Settings.from_env(
        {"MLRUNS_ASSETS_TRACKING_URI": "m", "MLRUNS_ASSETS_WAREHOUSE": LAKE}
    )
    assert only_url is not None and only_url.database == "/data/lake"
    file = Settings(tracking_uri="m", database="", warehouse="duckdb:/r/x.duckdb")
    assert (file.database, file.warehouse) == ("/r/x.duckdb", None)
