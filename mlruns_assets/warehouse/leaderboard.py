"""The leaderboard of a classification experiment: one row per committed run, ranked by AUROC,
rebuilt from the STRATOS tables in one statement and replaced whole in one transaction.

Each run's ``verdict`` re-applies the per-run rules of ``validation`` (value domains, rows per
run, counts against the predictions) to the database as it is now, plus the run-name rule: a
run that was valid when it committed but whose rows changed since shows it here.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from mlruns_assets.warehouse.duckdb_writer import existing_tables, rollback_quietly
from mlruns_assets.warehouse.stratos_schema import ESSENTIAL_METRICS, PREDICTIONS
from mlruns_assets.warehouse.tables import TableSpec, create_table_sql
from mlruns_assets.warehouse.validation import (
    ERROR,
    ROW_RULES,
    ROWS_PER_RUN,
    WARN,
    CheckOutcome,
    schema_check,
)

F64, I64, STR = pa.float64(), pa.int64(), pa.string()

LEADERBOARD = TableSpec(
    "leaderboard",
    pa.schema(
        [
            pa.field("rank", I64, nullable=False),
            pa.field("run_id", STR, nullable=False),
            pa.field("run_name", STR),
            pa.field("classifier", STR),
            pa.field("imputation_method", STR),
            pa.field("outlier_method", STR),
            pa.field("auroc", F64),
            pa.field("auroc_ci_lower", F64),
            pa.field("auroc_ci_upper", F64),
            pa.field("brier_score", F64, nullable=False),
            pa.field("scaled_brier", F64),
            pa.field("calibration_slope", F64),
            pa.field("calibration_intercept", F64),
            pa.field("o_e_ratio", F64),
            pa.field("net_benefit_5pct", F64, nullable=False),
            pa.field("net_benefit_10pct", F64, nullable=False),
            pa.field("net_benefit_20pct", F64, nullable=False),
            pa.field("n_test", I64, nullable=False),
            pa.field("n_events", I64, nullable=False),
            pa.field("verdict", STR, nullable=False),
        ]
    ),
    "Per classification experiment, every committed run ranked by AUROC (highest first, runs "
    "without one last): methods parsed from the run name, the essential STRATOS measures and "
    "the verdict of the per-run checks (`pass`, `warn: ...`, `fail: <checks>`). Rebuilt whole "
    "after each extraction.",
)
# The leaderboard's own columns that come straight from essential_metrics, in order.
_COPIED = [f.name for f in LEADERBOARD.schema if f.name not in ("rank", "verdict")]
PASS = "pass"
# The leaderboard's own checks: (name, severity, what it means), as the UI lists them.
LEADERBOARD_CHECKS: tuple[tuple[str, str, str], ...] = (
    ("matches_declared_schema", ERROR, "`leaderboard`: declared columns, types, nullability."),
    ("one_row_per_committed_run", ERROR, "Exactly one row per run in `essential_metrics`."),
    ("ranked_by_auroc", ERROR, "Ranks 1..n follow AUROC, highest first, runs without last."),
    (
        "auroc_within_its_ci",
        WARN,
        "Each AUROC lies inside its bootstrap CI (WARN: the point estimate comes from the "
        "bootstrap-mean probabilities, so a run can sit just outside).",
    ),
)


def _failures_sql(schema: str, tables: set[str]) -> str:
    """(run_id, failed check) for every per-run rule a run breaks, as one UNION ALL."""
    s = f'"{schema}"'
    empty = "SELECT NULL::VARCHAR AS run_id, NULL::VARCHAR AS failed WHERE false"
    parts = [empty]  # bounded: one SELECT per declared rule
    for table, rules in ROW_RULES.items():
        if table in tables:
            parts += [
                f"SELECT run_id, '{check}' FROM {s}.\"{table}\" WHERE ({bad})"
                for check, bad in rules
            ]
    for table, expected in ROWS_PER_RUN.items():
        if table in tables:
            parts.append(
                f"SELECT e.run_id, '{table}_has_{expected}_rows' FROM {s}.essential_metrics e "
                f'LEFT JOIN (SELECT run_id, count(*) AS n FROM {s}."{table}" GROUP BY run_id) c '
                f"USING (run_id) WHERE coalesce(c.n, 0) <> {expected}"
            )
    if PREDICTIONS.name in tables:
        parts.append(
            f"SELECT e.run_id, 'counts_match_predictions' FROM {s}.essential_metrics e "
            f"LEFT JOIN (SELECT run_id, count(*) AS n, sum(y_true) AS events "
            f"FROM {s}.predictions GROUP BY run_id) p USING (run_id) "
            "WHERE p.n IS DISTINCT FROM e.n_test OR p.events IS DISTINCT FROM e.n_events "
            "OR abs(e.prevalence - e.n_events / e.n_test) > 1e-12"
        )
    return "\nUNION ALL ".join(parts)


def leaderboard_sql(schema: str, tables: set[str]) -> str:
    """The leaderboard's rows, ranked, from the schema's STRATOS tables: one SELECT."""
    s = f'"{schema}"'
    copied = ", ".join(f"e.{c}" for c in _COPIED)
    return f"""
    WITH failures AS ({_failures_sql(schema, tables)}),
    verdicts AS (
        SELECT run_id, string_agg(DISTINCT failed, ', ' ORDER BY failed) AS failed
        FROM failures GROUP BY run_id),
    shared_names AS (
        SELECT run_name FROM {s}.essential_metrics WHERE run_name IS NOT NULL
        GROUP BY run_name HAVING count(*) > 1)
    SELECT row_number() OVER (ORDER BY e.auroc DESC NULLS LAST, e.run_name, e.run_id) AS rank,
        {copied},
        CASE WHEN v.failed IS NOT NULL THEN 'fail: ' || v.failed
             WHEN e.run_name IN (SELECT run_name FROM shared_names)
                 THEN 'warn: another run has the same name'
             ELSE '{PASS}' END AS verdict
    FROM {s}.essential_metrics e LEFT JOIN verdicts v USING (run_id)
    ORDER BY rank"""


@dataclass(frozen=True)
class LeaderboardWritten:
    """What a rebuild wrote: rows, and those with a verdict other than pass."""

    rows: int
    not_passing: int


def write_leaderboard(conn: duckdb.DuckDBPyConnection, schema: str) -> LeaderboardWritten:
    """Replace ``<schema>.leaderboard`` whole, in one transaction: readers see the old table or
    the new one. A schema without ``essential_metrics`` (no run committed yet) gets an empty
    table."""
    tables = existing_tables(conn, schema)
    target = f'"{schema}"."{LEADERBOARD.name}"'
    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    conn.begin()
    try:
        conn.execute(f"DROP TABLE IF EXISTS {target}")
        conn.execute(create_table_sql(schema, LEADERBOARD))
        if ESSENTIAL_METRICS.name in tables:
            conn.execute(f"INSERT INTO {target} BY NAME {leaderboard_sql(schema, tables)}")
        row = conn.execute(
            f"SELECT count(*), count(*) FILTER (verdict <> '{PASS}') FROM {target}"
        ).fetchone()
        conn.commit()
    except BaseException:
        rollback_quietly(conn)  # a refused commit (a DuckLake write conflict) ended it already
        raise
    rows, not_passing = row or (0, 0)
    return LeaderboardWritten(int(rows), int(not_passing))


def read_leaderboard(
    conn: duckdb.DuckDBPyConnection, schema: str, limit: int | None = None
) -> pa.Table:
    """The stored leaderboard in rank order (the first ``limit`` rows)."""
    clause = f" LIMIT {int(limit)}" if limit is not None else ""
    return conn.sql(
        f'SELECT * FROM "{schema}"."{LEADERBOARD.name}" ORDER BY rank{clause}'
    ).to_arrow_table()


def leaderboard_checks(conn: duckdb.DuckDBPyConnection, schema: str) -> list[CheckOutcome]:
    """The leaderboard against its declaration and its sources: exactly one row per committed
    run, ranked by AUROC, and each AUROC inside its own bootstrap CI (WARN: the point estimate
    comes from the bootstrap-mean probabilities, the CI from the bootstrap AUROCs, so a run can
    legitimately sit just outside)."""
    table = LEADERBOARD.name
    declared = schema_check(conn, schema, LEADERBOARD)
    if not declared.passed:
        skipped = "not evaluated: " + declared.detail
        return [declared] + [
            CheckOutcome(name, table, severity, False, skipped)
            for name, severity, _ in LEADERBOARD_CHECKS[1:]
        ]
    t, s = f'"{schema}"."{table}"', f'"{schema}"'
    source = (
        f"SELECT run_id FROM {s}.essential_metrics"
        if ESSENTIAL_METRICS.name in existing_tables(conn, schema)
        else "SELECT NULL::VARCHAR AS run_id WHERE false"
    )
    missing, extra, repeated = conn.execute(
        f"""SELECT
            (SELECT count(*) FROM ({source} EXCEPT SELECT run_id FROM {t})),
            (SELECT count(*) FROM (SELECT run_id FROM {t} EXCEPT {source})),
            (SELECT count(*) - count(DISTINCT run_id) FROM {t})"""
    ).fetchone() or (0, 0, 0)
    coverage = CheckOutcome(
        "one_row_per_committed_run",
        table,
        ERROR,
        missing == extra == repeated == 0,
        f"{missing} committed run(s) missing, {extra} row(s) of no committed run, "
        f"{repeated} repeated"
        if missing or extra or repeated
        else "",
    )
    disorder = conn.execute(
        f"""SELECT count(*) FROM (
            SELECT rank, row_number() OVER (ORDER BY rank) AS position,
                   auroc, lag(auroc) OVER (ORDER BY rank) AS above
            FROM {t})
            WHERE rank <> position OR (auroc IS NOT NULL AND above IS NULL AND position > 1)
               OR auroc > above"""
    ).fetchone()
    n_disorder = int(disorder[0]) if disorder else 0
    ranked = CheckOutcome(
        "ranked_by_auroc",
        table,
        ERROR,
        n_disorder == 0,
        f"{n_disorder} row(s) out of AUROC order" if n_disorder else "",
    )
    outside = conn.execute(
        f"SELECT count(*), list(run_name ORDER BY rank)[:5] FROM {t} "
        "WHERE auroc < auroc_ci_lower OR auroc > auroc_ci_upper"
    ).fetchone() or (0, [])
    within = CheckOutcome(
        "auroc_within_its_ci",
        table,
        WARN,
        outside[0] == 0,
        f"{outside[0]} run(s) outside: {', '.join(map(str, outside[1] or []))}"
        if outside[0]
        else "",
    )
    return [declared, coverage, ranked, within]
