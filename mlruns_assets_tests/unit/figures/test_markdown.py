"""The leaderboard as the UI's Markdown table."""

from __future__ import annotations

from pathlib import Path

import duckdb

from mlruns_assets.figures.markdown import LEADERBOARD_COLUMNS, leaderboard_markdown
from mlruns_assets.warehouse.leaderboard import read_leaderboard, write_leaderboard
from mlruns_assets_tests.support.stratos_db import SCHEMA, STANDARD_RUNS, database_with_runs


def test_top_rows_as_a_table_with_formatted_cells(tmp_path: Path) -> None:
    db = database_with_runs(tmp_path / "r.duckdb", STANDARD_RUNS)
    with duckdb.connect(str(db)) as conn:
        conn.execute(
            f"UPDATE {SCHEMA}.essential_metrics SET run_name = 'a|b' WHERE run_id = 'run_c'"
        )
        write_leaderboard(conn, SCHEMA)
        top = read_leaderboard(conn, SCHEMA, limit=3)
        first = top.to_pylist()[0]
    text = leaderboard_markdown(top, total=4)
    lines = text.splitlines()
    assert lines[0] == "Top 3 of 4 runs by AUROC; every run is in the `leaderboard` table."
    table = lines[2:]
    assert len(table) == 2 + 3  # header, rule, three rows
    assert table[0].count("|") == len(LEADERBOARD_COLUMNS) + 1
    assert all(row.count(" | ") == len(LEADERBOARD_COLUMNS) - 1 for row in table[2:])
    auroc = f"{first['auroc']:.3f} ({first['auroc_ci_lower']:.3f}–{first['auroc_ci_upper']:.3f})"
    assert table[2].startswith(
        f"| 1 | {first['run_name']} | CATBOOST | SAITS | pupil-gt | {auroc} |"
    )
    assert table[2].endswith("| 60 | 20 | pass |")
    assert "a\\|b" in table[3]  # a pipe in a name does not split the row


def test_no_run_yet_says_what_to_do(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "e.duckdb")) as conn:
        write_leaderboard(conn, SCHEMA)
        assert "extract the experiment first" in leaderboard_markdown(
            read_leaderboard(conn, SCHEMA), total=0
        )
