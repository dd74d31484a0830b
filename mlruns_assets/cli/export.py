"""``mlruns-assets export``: a DuckLake warehouse copied into one DuckDB file, to share."""

from __future__ import annotations

from pathlib import Path

import click

from mlruns_assets.cli.options import with_warehouse
from mlruns_assets.runtime.errors import UsageError
from mlruns_assets.runtime.warehouse_url import parse_warehouse


@click.command(
    "export",
    epilog="Example: mlruns-assets export --warehouse 'ducklake:postgres:dbname=lake "
    "host=127.0.0.1?data_path=/data/lake' --out results.duckdb\n\n"
    "Then: mlruns-assets check --db results.duckdb\n\n"
    "Exit codes: 0 exported, 2 bad arguments or an unreachable warehouse.",
)
@click.option(
    "--out",
    required=True,
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="the DuckDB file to write (must not exist)",
)
@with_warehouse
def export_command(out: Path, warehouse: str | None, duckdb_extensions: str | None) -> int:
    """Copy every table of a DuckLake warehouse, as of its latest snapshot, into a new DuckDB
    file that anyone can open (and `mlruns-assets check`). The file gets an id of its own: it is
    a copy, and a Dagster status recorded against the warehouse never vouches for it."""
    from mlruns_assets.warehouse import ducklake
    from mlruns_assets.warehouse.duckdb_writer import DuckDBWarehouse
    from mlruns_assets.warehouse.identity import IDENTITY_TABLE, ensure_database_id

    if not warehouse:
        raise UsageError("export needs --warehouse ducklake:postgres:...?data_path=...")
    try:
        url = parse_warehouse(warehouse)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not url.is_ducklake:
        raise UsageError(f"--warehouse {url} is a DuckDB file already: copy the file")
    if out.exists():
        raise UsageError(f"--out {out} exists; give a new file")
    if not out.expanduser().absolute().parent.is_dir():
        raise UsageError(f"--out {out}: folder {out.parent} does not exist")
    lake = DuckDBWarehouse(database="", warehouse=warehouse, duckdb_extensions=duckdb_extensions)
    with lake.get_connection(read_only=True) as conn:
        ducklake.export(conn, out, skip=[IDENTITY_TABLE])
    with DuckDBWarehouse(database=str(out)).get_connection() as conn:
        ensure_database_id(conn)
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema <> 'main'"
        ).fetchone()
    click.echo(f"exported {tables[0] if tables else 0} tables from {url} to {out}")
    return 0
