"""The one-query run verdict (``run_failures_sql``) against the detailed checks it stands in
for: on real extracted rows, every rule broken one at a time is caught by both."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from mlruns_assets.runtime.settings import Kind
from mlruns_assets.warehouse.catalog import tables_for_kind
from mlruns_assets.warehouse.validation import ROW_RULES, ROWS_PER_RUN, run_checks, run_failures_sql
from mlruns_assets_tests.support.bad_runs import BadDemoStore
from mlruns_assets_tests.support.cli import Extracted

SCHEMA = "classification"
SPECS = tables_for_kind(Kind.CLASSIFICATION)

# (check broken, SQL breaking it for the run $run_id only)
BREAKS = [
    ("auroc_in_unit_interval", "UPDATE {s}.essential_metrics SET auroc = 1.5"),
    ("brier_and_prevalence_in_unit_interval", "UPDATE {s}.essential_metrics SET brier_score = -1"),
    ("n_test_positive", "UPDATE {s}.essential_metrics SET n_events = n_test + 1"),
    ("y_prob_in_unit_interval", "UPDATE {s}.predictions SET y_prob = 'nan'::DOUBLE"),
    ("y_true_is_binary", "UPDATE {s}.predictions SET y_true = 2"),
    ("y_prob_std_not_negative", "UPDATE {s}.predictions SET y_prob_std = -0.1"),
    ("calibration_values_in_unit_interval", "UPDATE {s}.calibration_curves SET count = -1"),
    ("thresholds_in_grid", "UPDATE {s}.dca_curves SET threshold = 0.9"),
    ("retention_values_valid", "UPDATE {s}.retention_metrics SET retention_fraction = 0"),
    ("10_rows_per_run", "DELETE FROM {s}.calibration_curves WHERE run_id = $run_id AND bin = 3"),
    (
        "counts_match_predictions",
        "DELETE FROM {s}.predictions WHERE rowid IN "
        "(SELECT min(rowid) FROM {s}.predictions WHERE run_id = $run_id)",
    ),
]


@pytest.fixture
def database(
    bad_store_extracted: Extracted[BadDemoStore], tmp_path: Path
) -> Iterator[tuple[duckdb.DuckDBPyConnection, str]]:
    copy = tmp_path / "results.duckdb"
    shutil.copy(bad_store_extracted.database, copy)
    conn = duckdb.connect(str(copy))
    (run_id,) = conn.execute(  # a run with rows in every table, retention included
        f"SELECT min(run_id) FROM {SCHEMA}.retention_metrics"
    ).fetchone()
    yield conn, run_id
    conn.close()


def failures(conn: duckdb.DuckDBPyConnection, run_id: str) -> tuple[int, set[str]]:
    sql = run_failures_sql(SCHEMA, SPECS)
    assert sql is not None
    (count,) = conn.execute(sql, {"run_id": run_id}).fetchone()
    return count, {o.check for o in run_checks(conn, SCHEMA, SPECS, run_id) if not o.passed}


def test_a_good_run_passes_both(database: tuple[duckdb.DuckDBPyConnection, str]) -> None:
    conn, run_id = database
    assert failures(conn, run_id) == (0, set())


def test_every_rule_is_covered_by_a_break() -> None:
    rules = {check for rules in ROW_RULES.values() for check, _ in rules}
    rules |= {f"{n}_rows_per_run" for n in ROWS_PER_RUN.values()} | {"counts_match_predictions"}
    broken = {check for check, _ in BREAKS}
    # 1/20/50 rows per run are broken the same way as 10 (one rule, one count each)
    assert rules - broken == {"1_rows_per_run", "20_rows_per_run", "50_rows_per_run"}


@pytest.mark.parametrize(("check", "statement"), BREAKS, ids=[b[0] for b in BREAKS])
def test_each_broken_rule_fails_the_one_query_and_the_named_check(
    database: tuple[duckdb.DuckDBPyConnection, str], check: str, statement: str
) -> None:
    conn, run_id = database
    sql = statement.format(s=SCHEMA)
    if "WHERE" not in sql:
        sql += " WHERE run_id = $run_id"
    conn.execute(sql, {"run_id": run_id})
    count, failed = failures(conn, run_id)
    assert count >= 1 and check in failed
    # The other runs are untouched: their verdict stays clean.
    (other,) = conn.execute(
        f"SELECT max(run_id) FROM {SCHEMA}.essential_metrics WHERE run_id <> ?", [run_id]
    ).fetchone()
    assert failures(conn, other) == (0, set())
