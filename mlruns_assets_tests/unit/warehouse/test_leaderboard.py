"""The leaderboard table: ranked rows from the STRATOS tables, replaced whole, per-run verdicts
from the validation rules, and its own checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from mlruns_assets.warehouse.leaderboard import (
    LEADERBOARD_CHECKS,
    leaderboard_checks,
    read_leaderboard,
    write_leaderboard,
)
from mlruns_assets_tests.support.stratos_db import (
    SCHEMA,
    STANDARD_RUNS,
    FakeRun,
    database_with_runs,
    write_runs,
)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(database_with_runs(tmp_path / "r.duckdb", STANDARD_RUNS)))
    yield connection
    connection.close()


def _outcomes(conn: duckdb.DuckDBPyConnection) -> dict[str, tuple[bool, str]]:
    return {o.check: (o.passed, o.detail) for o in leaderboard_checks(conn, SCHEMA)}


def test_rows_ranked_by_auroc_with_the_runs_measures_and_methods(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    written = write_leaderboard(conn, SCHEMA)
    rows = read_leaderboard(conn, SCHEMA).to_pylist()
    assert written.rows == 4 and written.not_passing == 0
    # Best separation first; the single-class run (no AUROC) last.
    assert [r["run_id"] for r in rows] == ["run_a", "run_c", "run_b", "run_d"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert rows[3]["auroc"] is None
    assert rows[0]["classifier"] == "CATBOOST"
    assert rows[0]["imputation_method"] == "SAITS" and rows[0]["outlier_method"] == "pupil-gt"
    essential = conn.execute(
        f"SELECT auroc, auroc_ci_lower, brier_score, net_benefit_20pct, n_test, n_events "
        f"FROM {SCHEMA}.essential_metrics WHERE run_id = 'run_a'"
    ).fetchone()
    top = rows[0]
    assert (
        top["auroc"],
        top["auroc_ci_lower"],
        top["brier_score"],
        top["net_benefit_20pct"],
        top["n_test"],
        top["n_events"],
    ) == essential
    assert all(r["verdict"] == "pass" for r in rows)
    assert all(passed for passed, _ in _outcomes(conn).values())
    assert set(_outcomes(conn)) == {name for name, _, _ in LEADERBOARD_CHECKS}


def test_rebuild_replaces_the_whole_table(conn: duckdb.DuckDBPyConnection) -> None:
    write_leaderboard(conn, SCHEMA)
    conn.execute(f"DELETE FROM {SCHEMA}.essential_metrics WHERE run_id = 'run_a'")
    write_runs(conn, [FakeRun("run_e", "TabM_eval-auc__simple1.0__SAITS__LOF", separation=4.0)])
    assert write_leaderboard(conn, SCHEMA).rows == 4
    rows = read_leaderboard(conn, SCHEMA).to_pylist()
    assert [r["run_id"] for r in rows] == ["run_e", "run_c", "run_b", "run_d"]
    assert read_leaderboard(conn, SCHEMA, limit=2).num_rows == 2


def test_verdict_names_the_broken_rules_and_shared_names(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(
        f"UPDATE {SCHEMA}.calibration_curves SET observed_proportion = 1.5 "
        "WHERE run_id = 'run_b' AND bin = (SELECT min(bin) FROM "
        f"{SCHEMA}.calibration_curves WHERE run_id = 'run_b' AND count > 0)"
    )
    conn.execute(f"DELETE FROM {SCHEMA}.dca_curves WHERE run_id = 'run_b' AND threshold > 0.4")
    conn.execute(f"UPDATE {SCHEMA}.essential_metrics SET run_name = 'same' WHERE run_id = 'run_c'")
    conn.execute(f"UPDATE {SCHEMA}.essential_metrics SET run_name = 'same' WHERE run_id = 'run_d'")
    written = write_leaderboard(conn, SCHEMA)
    verdicts = dict(conn.execute(f"SELECT run_id, verdict FROM {SCHEMA}.leaderboard").fetchall())
    assert verdicts["run_b"] == "fail: calibration_values_in_unit_interval, dca_curves_has_50_rows"
    assert verdicts["run_c"] == verdicts["run_d"] == "warn: another run has the same name"
    assert verdicts["run_a"] == "pass"
    assert written.not_passing == 3


def test_checks_catch_a_missing_row_a_wrong_rank_and_an_auroc_outside_its_ci(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    write_leaderboard(conn, SCHEMA)
    conn.execute(f"UPDATE {SCHEMA}.leaderboard SET rank = 5 - rank")
    conn.execute(f"UPDATE {SCHEMA}.leaderboard SET auroc = 0.99 WHERE run_id = 'run_b'")
    conn.execute(f"DELETE FROM {SCHEMA}.leaderboard WHERE run_id = 'run_c'")
    outcomes = _outcomes(conn)
    assert outcomes["matches_declared_schema"][0]
    assert outcomes["one_row_per_committed_run"] == (
        False,
        "1 committed run(s) missing, 0 row(s) of no committed run, 0 repeated",
    )
    assert not outcomes["ranked_by_auroc"][0]
    assert outcomes["auroc_within_its_ci"][0] is False
    assert "XGBOOST_eval-auc" in outcomes["auroc_within_its_ci"][1]


def test_a_schema_without_runs_gets_an_empty_leaderboard(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "empty.duckdb")) as conn:
        assert write_leaderboard(conn, "fresh").rows == 0
        assert read_leaderboard(conn, "fresh").num_rows == 0
        assert all(o.passed for o in leaderboard_checks(conn, "fresh"))


def test_a_missing_leaderboard_fails_every_check(conn: duckdb.DuckDBPyConnection) -> None:
    outcomes = _outcomes(conn)
    assert outcomes["matches_declared_schema"] == (False, "table is missing")
    assert not any(passed for passed, _ in outcomes.values())
