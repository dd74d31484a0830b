"""Where the tables go, as one string (``--warehouse``, ``MLRUNS_ASSETS_WAREHOUSE``).

- ``duckdb:PATH`` (or a bare path): one DuckDB file, the default (``--db PATH``).
- ``ducklake:postgres:<libpq connection string>?data_path=<folder or s3://bucket/prefix>``: a
  DuckLake catalog in a Postgres database, its Parquet data files in the folder or on S3. Several
  processes and machines can write it at once (deploy/DUCKLAKE.md).

Parsed here, below every other layer, so that the settings, the command line and the Dagster
resource read one value the same way; ``warehouse.ducklake`` opens it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DUCKDB, DUCKLAKE = "duckdb", "ducklake"
_DATA_PATH = re.compile(r"[?&]data_path=([^&]*)")
_PASSWORD = re.compile(r"(password\s*=\s*)(\S+)|(://[^:/@]*:)([^@]*)(@)", re.IGNORECASE)


@dataclass(frozen=True)
class WarehouseUrl:
    """A parsed ``--warehouse``: a DuckDB file (``path``) or a DuckLake catalog (``catalog``,
    a libpq connection string, and ``data_path``)."""

    scheme: str
    path: str = ""
    catalog: str = ""
    data_path: str = ""

    @property
    def is_ducklake(self) -> bool:
        return self.scheme == DUCKLAKE

    @property
    def data_on_s3(self) -> bool:
        return self.data_path.startswith("s3://")

    @property
    def anchor(self) -> Path:
        """The local path beside which the Dagster home and the private folder go by default:
        the file, or the DuckLake data folder (``./ducklake`` for data on S3)."""
        if not self.is_ducklake:
            return Path(self.path).expanduser()
        return Path("ducklake") if self.data_on_s3 else Path(self.data_path).expanduser()

    def __str__(self) -> str:
        """The URL with any password masked (for messages and the UI)."""
        if not self.is_ducklake:
            return f"duckdb:{self.path}"
        catalog = _PASSWORD.sub(
            lambda m: f"{m[1]}***" if m[1] else f"{m[3]}***{m[5]}", self.catalog
        )
        return f"ducklake:postgres:{catalog}?data_path={self.data_path}"


def parse_warehouse(text: str) -> WarehouseUrl:
    """Parse ``--warehouse``; ValueError with a one-line message naming what is wrong."""
    text = text.strip()
    if not text:
        raise ValueError("--warehouse is empty")
    if not text.startswith(f"{DUCKLAKE}:"):
        path = text.removeprefix(f"{DUCKDB}:")
        if not path:
            raise ValueError(f"--warehouse {text!r}: no file after 'duckdb:'")
        if re.match(r"^[a-z][a-z0-9+]*://", path):
            raise ValueError(
                f"--warehouse {text!r}: not a file path (use duckdb:PATH or "
                "ducklake:postgres:<connection string>?data_path=<folder or s3://...>)"
            )
        return WarehouseUrl(DUCKDB, path=path)
    rest = text.removeprefix(f"{DUCKLAKE}:")
    if not rest.startswith("postgres:"):
        catalog_kind = rest.split(":", 1)[0] or "nothing"
        raise ValueError(
            f"--warehouse: DuckLake catalog {catalog_kind!r} is not supported "
            "(use ducklake:postgres:<libpq connection string>?data_path=...)"
        )
    rest = rest.removeprefix("postgres:")
    found = _DATA_PATH.search(rest)
    if found is None or not found[1].strip():
        raise ValueError(
            "--warehouse: a DuckLake warehouse needs its data path: append "
            "?data_path=<folder or s3://bucket/prefix>"
        )
    data_path = found[1].strip()
    catalog = (rest[: found.start()] + rest[found.end() :]).strip()
    if not catalog:
        raise ValueError("--warehouse: no Postgres connection string after 'ducklake:postgres:'")
    if "://" in data_path and not data_path.startswith("s3://"):
        raise ValueError(f"--warehouse: data_path {data_path!r}: give a folder or s3://...")
    if not data_path.startswith("s3://"):
        data_path = str(Path(data_path).expanduser().absolute())
    return WarehouseUrl(DUCKLAKE, catalog=catalog, data_path=data_path)
