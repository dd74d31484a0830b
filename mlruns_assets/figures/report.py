"""The report to share: one self-contained HTML file (inline CSS, PNGs as ``data:`` URIs, no
script, nothing fetched) with each classification experiment's leaderboard and every run's four
curves, built from the results database alone (read only: the leaderboard is recomputed with
the same statement that writes the stored table, so a report is never older than the rows)."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb

from mlruns_assets.figures.curve_data import CURVES, read_run_curves
from mlruns_assets.figures.markdown import LEADERBOARD_COLUMNS, cell, png_data_uri
from mlruns_assets.figures.plots import render_curves
from mlruns_assets.warehouse.duckdb_writer import existing_tables
from mlruns_assets.warehouse.leaderboard import PASS, leaderboard_sql
from mlruns_assets.warehouse.stratos_schema import STRATOS_TABLES

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin-bottom: 2em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th { background: #eef2f8; }
td.text { text-align: left; }
td.fail { color: #a00; font-weight: bold; }
td.warn { color: #a60; }
section.run { border-top: 1px solid #ccc; padding-top: 0.5em; margin-top: 1.5em; }
.curves img { width: 368px; height: auto; margin: 4px; border: 1px solid #eee; }
.muted { color: #666; font-size: 13px; }
"""
TEXT_COLUMNS = {"run_name", "classifier", "imputation_method", "outlier_method", "verdict"}


def classification_schemas(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Schemas holding every STRATOS table, sorted."""
    names = {t.name for t in STRATOS_TABLES}
    rows = conn.execute(
        "SELECT DISTINCT table_schema FROM information_schema.tables "
        "WHERE table_name = 'essential_metrics' ORDER BY 1"
    ).fetchall()
    return [s for (s,) in rows if names <= existing_tables(conn, s)]


def leaderboard_rows(conn: duckdb.DuckDBPyConnection, schema: str) -> list[dict[str, object]]:
    """The leaderboard as it stands, computed (not read from the stored table)."""
    rel = conn.execute(leaderboard_sql(schema, existing_tables(conn, schema)))
    names = [d[0] for d in rel.description or []]
    return [dict(zip(names, r, strict=True)) for r in rel.fetchall()]


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _verdict_class(verdict: str) -> str:
    return "fail" if verdict.startswith("fail") else "warn" if verdict != PASS else "text"


def _leaderboard_html(schema: str, rows: list[dict[str, object]]) -> Iterator[str]:
    yield "<table><tr>" + "".join(f"<th>{_e(h)}</th>" for _, h, _ in LEADERBOARD_COLUMNS)
    yield "</tr>"
    for row in rows:
        cells = []
        for column, _, fmt in LEADERBOARD_COLUMNS:
            text = _e(cell(row, column, fmt))
            if column == "run_name":
                text = f'<a href="#{_e(schema)}-{_e(row["run_id"])}">{text}</a>'
            klass = _verdict_class(str(row["verdict"])) if column == "verdict" else ""
            klass = klass or ("text" if column in TEXT_COLUMNS else "")
            cells.append(f'<td class="{klass}">{text}</td>' if klass else f"<td>{text}</td>")
        yield "<tr>" + "".join(cells) + "</tr>"
    yield "</table>"


def _run_html(conn: duckdb.DuckDBPyConnection, schema: str, row: dict[str, object]) -> str:
    run_id = str(row["run_id"])
    curves = read_run_curves(conn, schema, run_id)
    head = (
        f'<section class="run" id="{_e(schema)}-{_e(run_id)}"><h3>#{row["rank"]} '
        f'{_e(row["run_name"] or run_id)}</h3><p class="muted">run {_e(run_id)} · checks: '
        f"{_e(row['verdict'])}</p>"
    )
    if curves is None:
        return head + "<p>no STRATOS rows for this run</p></section>"
    pngs = render_curves(curves)
    images = "".join(
        f'<img alt="{_e(title)}" title="{_e(title)}" src="{png_data_uri(pngs[name])}">'
        for name, title in CURVES
    )
    return f'{head}<div class="curves">{images}</div></section>'


def build_report(
    conn: duckdb.DuckDBPyConnection,
    source: str,
    on_run: Callable[[int, int], None] | None = None,
) -> Iterator[str]:
    """The report's HTML, piece by piece (one run's pictures in memory at a time);
    ``on_run(done, total)`` after each run."""
    schemas = classification_schemas(conn)
    boards = {s: leaderboard_rows(conn, s) for s in schemas}
    total = sum(len(rows) for rows in boards.values())
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    yield (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>mlruns-assets report</title>"
        f"<style>{STYLE}</style></head><body><h1>STRATOS performance report</h1>"
        f'<p class="muted">{_e(source)} · {total} runs in {len(schemas)} classification '
        f"experiment(s) · written {now}</p>"
    )
    if not schemas:
        yield "<p>No classification experiment in this database.</p>"
    done = 0
    for schema in schemas:
        rows = boards[schema]
        yield f"<h2>{_e(schema)}: leaderboard ({len(rows)} runs, by AUROC)</h2>"
        yield from _leaderboard_html(schema, rows)
        for row in rows:
            yield _run_html(conn, schema, row)
            done += 1
            if on_run is not None:
                on_run(done, total)
    yield "</body></html>\n"


def write_report(
    conn: duckdb.DuckDBPyConnection,
    out: Path,
    source: str,
    on_run: Callable[[int, int], None] | None = None,
) -> int:
    """Write the report to ``out`` (replaced only once complete); returns its size in bytes."""
    partial = out.with_name(out.name + ".partial")
    with partial.open("w", encoding="utf-8") as sink:
        for piece in build_report(conn, source, on_run):
            sink.write(piece)
    partial.replace(out)
    return out.stat().st_size
