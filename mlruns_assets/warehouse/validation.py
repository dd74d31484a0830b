"""Validation of the results database in SQL: declared schemas, value domains, consistency.

One implementation serves three places: the extraction step runs the row checks of a run inside
its transaction before committing (a failing run never lands), the Dagster asset checks show
them in the UI, and ``mlruns-assets check`` gates CI.
"""

from __future__ import annotations

import re
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import duckdb

from mlruns_assets.runtime.settings import (
    ORIGINAL_CODE_PATTERN,
    SYNTHETIC_NAME_PREFIX,
    SYNTHETIC_TAG,
    SYNTHETIC_TAG_VALUES,
)
from mlruns_assets.warehouse.catalog import kind_of_tables, tables_for_kind
from mlruns_assets.warehouse.duckdb_writer import (
    connect_with_retry,
    existing_tables,
    experiment_schemas,
)
from mlruns_assets.warehouse.stratos_schema import (
    CALIBRATION_CURVES,
    DCA_CURVES,
    ESSENTIAL_METRICS,
    PREDICTIONS,
    PROBABILITY_DISTRIBUTIONS,
    RETENTION_METRICS,
)
from mlruns_assets.warehouse.tables import TableSpec, duckdb_type

ERROR, WARN = "ERROR", "WARN"


@dataclass(frozen=True)
class CheckOutcome:
    """One check's verdict, with where it failed."""

    check: str
    table: str
    severity: str
    passed: bool
    detail: str = ""


def _unit(col: str) -> str:
    return f"({col} IS NOT NULL AND (isnan({col}) OR {col} < 0 OR {col} > 1))"


_FRACTION_OUTSIDE = "retention_fraction <= 0 OR retention_fraction > 1"

# Per table: (check name, SQL condition that is true for a BAD row).
ROW_RULES: dict[str, list[tuple[str, str]]] = {
    ESSENTIAL_METRICS.name: [
        (
            "auroc_in_unit_interval",
            " OR ".join(_unit(c) for c in ("auroc", "auroc_ci_lower", "auroc_ci_upper")),
        ),
        (
            "brier_and_prevalence_in_unit_interval",
            f"{_unit('brier_score')} OR {_unit('prevalence')}",
        ),
        ("n_test_positive", "n_test <= 0 OR n_events < 0 OR n_events > n_test"),
    ],
    PREDICTIONS.name: [
        ("y_prob_in_unit_interval", f"y_prob IS NULL OR {_unit('y_prob')}"),
        ("y_true_is_binary", "y_true NOT IN (0, 1)"),
        ("y_prob_std_not_negative", "y_prob_std < 0 OR isnan(y_prob_std)"),
    ],
    CALIBRATION_CURVES.name: [
        (
            "calibration_values_in_unit_interval",
            f"{_unit('predicted_mean')} OR {_unit('observed_proportion')} OR count < 0",
        ),
    ],
    DCA_CURVES.name: [
        ("thresholds_in_grid", "threshold < 0.01 OR threshold > 0.5"),
    ],
    RETENTION_METRICS.name: [
        (
            "retention_values_valid",
            f"{_unit('auroc')} OR {_unit('brier')} OR {_FRACTION_OUTSIDE}",
        ),
    ],
}

# Per table: exact number of rows each run must have.
ROWS_PER_RUN: dict[str, int] = {
    ESSENTIAL_METRICS.name: 1,
    CALIBRATION_CURVES.name: 10,
    PROBABILITY_DISTRIBUTIONS.name: 20,
    DCA_CURVES.name: 50,
}


def _runs_clause(run_id: str | None) -> tuple[str, list[object]]:
    return ("WHERE run_id = ?", [run_id]) if run_id else ("", [])


def schema_check(conn: duckdb.DuckDBPyConnection, schema: str, spec: TableSpec) -> CheckOutcome:
    """The table has exactly the declared columns, types and nullability, in order."""
    rows = conn.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? AND table_catalog = current_database() "
        "ORDER BY ordinal_position",
        [schema, spec.name],
    ).fetchall()
    actual = [(n, t, nullable == "YES") for n, t, nullable in rows]
    declared = [(f.name, duckdb_type(f.type), f.nullable) for f in spec.schema]
    name = "matches_declared_schema"
    if not actual:
        return CheckOutcome(name, spec.name, ERROR, False, "table is missing")
    diffs = [
        f"{d[0]}: declared {d[1]}{'' if d[2] else ' NOT NULL'}, found "
        + (f"{a[1]}{'' if a[2] else ' NOT NULL'}" if a else "nothing")
        for d, a in zip(declared, actual + [None] * len(declared), strict=False)
        if a is None or (a[0], _norm(a[1]), a[2]) != (d[0], _norm(d[1]), d[2])
    ]
    extra = [a[0] for a in actual[len(declared) :]]
    if extra:
        diffs.append(f"undeclared columns {extra}")
    return CheckOutcome(name, spec.name, ERROR, not diffs, "; ".join(diffs))


def _norm(type_name: str) -> str:
    return type_name.upper().replace("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE")


def row_checks(
    conn: duckdb.DuckDBPyConnection, schema: str, table: str, run_id: str | None = None
) -> list[CheckOutcome]:
    """Value domains and per-run row counts of one table (optionally one run)."""
    outcomes: list[CheckOutcome] = []
    where, params = _runs_clause(run_id)
    target = f'"{schema}"."{table}"'
    for check, bad in ROW_RULES.get(table, []):
        cond = f"({bad})" + (" AND run_id = ?" if run_id else "")
        n_bad, runs = conn.execute(
            f"SELECT count(*), list(DISTINCT run_id)[:5] FROM {target} WHERE {cond}", params
        ).fetchone() or (0, [])
        detail = f"{n_bad} row(s) fail, in run(s) {', '.join(runs or [])}" if n_bad else ""
        outcomes.append(
            CheckOutcome(check, table, ERROR, n_bad == 0, detail)
        )  # bounded: one outcome per rule
    if table in ROWS_PER_RUN:
        expected = ROWS_PER_RUN[table]
        bad_runs = conn.execute(
            f"SELECT run_id, count(*) FROM {target} {where} GROUP BY run_id "
            f"HAVING count(*) <> {expected} LIMIT 5",
            params,
        ).fetchall()
        detail = ", ".join(f"{r} has {n}" for r, n in bad_runs)
        outcomes.append(
            CheckOutcome(f"{expected}_rows_per_run", table, ERROR, not bad_runs, detail)
        )
    return outcomes


def consistency_checks(
    conn: duckdb.DuckDBPyConnection, schema: str, run_id: str | None = None
) -> list[CheckOutcome]:
    """n_test = rows in predictions, n_events = sum(y_true), prevalence = n_events / n_test."""
    if not {ESSENTIAL_METRICS.name, PREDICTIONS.name} <= existing_tables(conn, schema):
        return []
    where, params = _runs_clause(run_id)
    rows = conn.execute(
        f"""
        SELECT e.run_id FROM "{schema}".essential_metrics e
        LEFT JOIN (SELECT run_id, count(*) AS n, sum(y_true) AS events
                   FROM "{schema}".predictions {where} GROUP BY run_id) p USING (run_id)
        {where.replace("run_id", "e.run_id")}
        {"AND" if where else "WHERE"} (p.n IS DISTINCT FROM e.n_test
            OR p.events IS DISTINCT FROM e.n_events
            OR abs(e.prevalence - e.n_events / e.n_test) > 1e-12)
        LIMIT 5""",
        params * 2,  # the run filter appears twice: predictions, then essential_metrics
    ).fetchall()
    detail = "inconsistent runs: " + ", ".join(r[0] for r in rows) if rows else ""
    return [
        CheckOutcome("counts_match_predictions", ESSENTIAL_METRICS.name, ERROR, not rows, detail)
    ]


def experiment_checks(
    conn: duckdb.DuckDBPyConnection,
    schema: str,
    *,
    subject_map_configured: bool,
    original_pattern: str = ORIGINAL_CODE_PATTERN,
    registry: dict[str, set[str]] | None = None,
) -> list[CheckOutcome]:
    """Experiment-wide checks: duplicate run names, unregistered methods, original subject codes
    left in the data, synthetic runs present."""
    tables = existing_tables(conn, schema)
    out: list[CheckOutcome] = []
    if "runs" not in tables:
        out += [
            CheckOutcome(name, "runs", severity, True, "not applicable: no runs table yet")
            for name, severity in (("run_names_unique", WARN), ("synthetic_runs_absent", ERROR))
        ]
    else:
        dups = conn.execute(
            f'SELECT run_name FROM "{schema}".runs GROUP BY run_name HAVING count(*) > 1 LIMIT 5'
        ).fetchall()
        out.append(
            CheckOutcome(
                "run_names_unique",
                "runs",
                WARN,
                not dups,
                "duplicated: " + ", ".join(str(d[0]) for d in dups) if dups else "",
            )
        )
        synthetic = conn.execute(
            f"""SELECT run_id FROM "{schema}".runs WHERE starts_with(run_name, ?)
                OR list_contains(?, lower(coalesce(tags[?], ''))) LIMIT 5""",
            [SYNTHETIC_NAME_PREFIX, list(SYNTHETIC_TAG_VALUES), SYNTHETIC_TAG],
        ).fetchall()
        out.append(
            CheckOutcome(
                "synthetic_runs_absent",
                "runs",
                ERROR,
                not synthetic,
                ", ".join(r[0] for r in synthetic),
            )
        )
    if registry and ESSENTIAL_METRICS.name in tables:
        for column, allowed in registry.items():
            found = {
                r[0]
                for r in conn.execute(
                    f'SELECT DISTINCT {column} FROM "{schema}".essential_metrics '
                    f"WHERE {column} IS NOT NULL"
                ).fetchall()
            }
            unknown = sorted(found - allowed)
            out.append(  # bounded: one outcome per registry column
                CheckOutcome(
                    f"{column}_in_registry",
                    ESSENTIAL_METRICS.name,
                    WARN,
                    not unknown,
                    ", ".join(unknown[:10]),
                )
            )
    out.append(original_codes_check(conn, schema, subject_map_configured, original_pattern))
    return out


def subject_code_tables(conn: duckdb.DuckDBPyConnection, schema: str) -> list[str]:
    """Tables of the schema with a ``subject_code`` column, whatever their kind."""
    rows = conn.execute(
        "SELECT table_name FROM information_schema.columns "
        "WHERE table_schema = ? AND column_name = 'subject_code' "
        "AND table_catalog = current_database() ORDER BY 1",
        [schema],
    ).fetchall()
    return [r[0] for r in rows]


def original_codes_check(
    conn: duckdb.DuckDBPyConnection,
    schema: str,
    subject_map_configured: bool,
    original_pattern: str = ORIGINAL_CODE_PATTERN,
) -> CheckOutcome:
    """With a subject map, no original subject code in any column holding subject codes, in
    any table of the schema (predictions, signals, and whatever a later kind adds)."""
    tables = subject_code_tables(conn, schema)
    where = ", ".join(tables) or "subject codes"
    if not subject_map_configured or not tables:
        why = "no subject map configured" if not subject_map_configured else "no subject codes"
        return CheckOutcome(
            "no_original_subject_codes", where, ERROR, True, f"not applicable: {why}"
        )
    re.compile(original_pattern)  # a bad pattern fails loudly here, not inside DuckDB
    found = []  # bounded: one count per table with subject codes
    for table in tables:
        row = conn.execute(
            f'SELECT count(*) FROM "{schema}"."{table}" WHERE regexp_matches(subject_code, ?)',
            [original_pattern],
        ).fetchone()
        if row and row[0]:
            found.append(f"{table}: {row[0]} row(s) match {original_pattern}")
    detail = "; ".join(found)
    return CheckOutcome("no_original_subject_codes", where, ERROR, not found, detail)


def run_failures_sql(schema: str, specs: list[TableSpec]) -> str | None:
    """One query counting what ``run_checks`` would fail for the run ``$run_id``: the number of
    failing checks (None when the tables have no row checks). Every subquery reads only the
    run's rows, so its cost does not grow with the database (the detailed checks run only when
    this finds something)."""
    failing: list[str] = []
    names = {spec.name for spec in specs}
    for spec in specs:
        target = f'"{schema}"."{spec.name}"'
        for _check, bad in ROW_RULES.get(spec.name, []):
            failing.append(  # bounded: one condition per declared rule
                f"EXISTS (SELECT 1 FROM {target} WHERE run_id = $run_id AND ({bad}))"
            )
        if spec.name in ROWS_PER_RUN:  # no rows at all passes, as in row_checks
            n = f"(SELECT count(*) FROM {target} WHERE run_id = $run_id)"
            failing.append(f"{n} NOT IN (0, {ROWS_PER_RUN[spec.name]})")  # bounded: per table
    if {ESSENTIAL_METRICS.name, PREDICTIONS.name} <= names:
        failing.append(
            f"""EXISTS (SELECT 1 FROM "{schema}".essential_metrics e,
                (SELECT count(*) AS n, sum(y_true) AS events FROM "{schema}".predictions
                 WHERE run_id = $run_id) p
                WHERE e.run_id = $run_id AND (p.n IS DISTINCT FROM e.n_test
                    OR p.events IS DISTINCT FROM e.n_events
                    OR abs(e.prevalence - e.n_events / e.n_test) > 1e-12))"""
        )
    if not failing:
        return None
    return "SELECT " + " + ".join(f"({f})::INTEGER" for f in failing)


def run_checks(
    conn: duckdb.DuckDBPyConnection, schema: str, specs: list[TableSpec], run_id: str
) -> list[CheckOutcome]:
    """The row and consistency checks of one run, each with its detail (the commit transaction
    runs them when ``run_failures_sql`` finds a failure)."""
    outcomes: list[CheckOutcome] = []
    for spec in specs:
        outcomes += row_checks(
            conn, schema, spec.name, run_id
        )  # bounded: one outcome list per table
    return outcomes + consistency_checks(conn, schema, run_id)


def database_checks(
    conn: duckdb.DuckDBPyConnection,
    schema: str,
    specs: list[TableSpec],
    *,
    subject_map_configured: bool,
    original_pattern: str = ORIGINAL_CODE_PATTERN,
    registry: dict[str, set[str]] | None = None,
) -> list[CheckOutcome]:
    """Every check of one experiment's schema: declared schemas, rows, consistency, experiment."""
    existing = existing_tables(conn, schema)
    outcomes: list[CheckOutcome] = []  # bounded: a few checks per declared table
    for spec in specs:
        outcomes.append(schema_check(conn, schema, spec))
        if spec.name in existing:
            outcomes += row_checks(conn, schema, spec.name)
    return (
        outcomes
        + consistency_checks(conn, schema)
        + experiment_checks(
            conn,
            schema,
            subject_map_configured=subject_map_configured,
            original_pattern=original_pattern,
            registry=registry,
        )
    )


def check_database(
    database: Path | duckdb.DuckDBPyConnection,
    *,
    subject_map_configured: bool,
    original_pattern: str = ORIGINAL_CODE_PATTERN,
    registry: dict[str, set[str]] | None = None,
) -> list[tuple[str, CheckOutcome]]:
    """(schema, outcome) for every check of every experiment schema in the database (a file,
    or a connection, e.g. to a DuckLake warehouse); each schema is checked as the kind whose
    tables it holds."""
    if isinstance(database, Path):
        with closing(connect_with_retry(str(database), read_only=True)) as conn:
            return check_database(
                conn,
                subject_map_configured=subject_map_configured,
                original_pattern=original_pattern,
                registry=registry,
            )
    conn = database
    results: list[tuple[str, CheckOutcome]] = []  # bounded: a few dozen checks per schema
    for schema in experiment_schemas(conn):
        kind = kind_of_tables(existing_tables(conn, schema))
        outcomes = database_checks(
            conn,
            schema,
            tables_for_kind(kind),
            subject_map_configured=subject_map_configured,
            original_pattern=original_pattern,
            registry=registry,
        )
        results += [(schema, o) for o in outcomes]
    return results
