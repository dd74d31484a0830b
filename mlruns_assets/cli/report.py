"""``mlruns-assets report``: one self-contained HTML file to share, from the database alone."""

from __future__ import annotations

import time
from pathlib import Path

import click

from mlruns_assets.cli.options import database_option, with_warehouse
from mlruns_assets.runtime.errors import UsageError


def _progress(done: int, total: int) -> None:
    """A line on stderr every 25 runs (drawing takes ~0.2-0.5 s per run)."""
    if done % 25 == 0 or done == total:
        click.echo(f"curves drawn: {done}/{total} runs", err=True)


@click.command(
    "report",
    epilog="Example: mlruns-assets report --db demo/results.duckdb --out report.html\n\n"
    "Exit codes: 0 written, 2 bad arguments (no such database, not a DuckDB database, an "
    "output path that cannot be written).",
)
@click.option("--db", "database", metavar="PATH", help="the results database")
@with_warehouse
@click.option(
    "--out",
    metavar="FILE",
    help="the HTML file to write (replaced only once complete)",
)
def report_command(
    database: str | None, out: str | None, warehouse: str | None, duckdb_extensions: str | None
) -> int:
    """Write one self-contained HTML file (inline styles and pictures, no script, nothing
    fetched: it opens offline) with each classification experiment's leaderboard and every
    run's calibration curve, decision curve, ROC and predicted-probability distributions,
    read from the results database alone (opened read only; MLflow and Dagster are not
    needed)."""
    from mlruns_assets.figures.report import write_report
    from mlruns_assets.warehouse.duckdb_writer import (
        DuckDBWarehouse,
        connect_with_retry,
        database_file_problem,
    )

    lake = None
    if warehouse and warehouse.startswith("ducklake:"):
        lake = DuckDBWarehouse(
            database="", warehouse=warehouse, duckdb_extensions=duckdb_extensions
        )
        try:
            source = str(lake.url)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    db = Path(database_option(database, warehouse) or "").expanduser()
    if not out:  # checked after --db, which is required unless --warehouse is given
        raise click.UsageError("Missing option '--out'.")
    if warehouse and lake is None:
        db = Path(warehouse.removeprefix("duckdb:")).expanduser()
    target = Path(out).expanduser()
    if lake is None and not db.is_file():
        raise UsageError(f"database {db} does not exist")
    if lake is None and (problem := database_file_problem(db)):
        raise UsageError(f"database {db}: {problem}")
    if target.is_dir():
        raise UsageError(f"--out {target} is a folder; give a file path")
    if not target.absolute().parent.is_dir():
        raise UsageError(f"--out {target}: folder {target.absolute().parent} does not exist")
    started = time.monotonic()
    if lake is not None:
        conn = lake.open_connection(read_only=True)
    else:
        conn = connect_with_retry(str(db), read_only=True, timeout_seconds=60)
        source = db.name
    try:
        size = write_report(conn, target, source=source, on_run=_progress)
    except OSError as exc:
        raise UsageError(f"--out {target}: {exc.strerror}") from None
    finally:
        conn.close()
    click.echo(
        f"report written in {time.monotonic() - started:.1f} s: {target} ({size / 1e6:.1f} MB)"
    )
    return 0
