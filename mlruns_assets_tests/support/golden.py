"""A fingerprint of every table of a results database that does not depend on when or where the
store was written: run ids become run names, and timestamps, paths and MLflow's own tags are left
out. Used to prove that a refactoring extracts the demo store to the same rows as the code before
it (``data/demo_golden.json`` was written by the code before the package was split into layers).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import duckdb

# Columns whose values depend on the moment or the place a store was written, not on its data.
VOLATILE = {"run_id", "experiment_id", "artifact_uri", "tags"}


def table_fingerprints(database: Path) -> dict[str, dict[str, object]]:
    """``schema.table`` -> row count and SHA-256 of its rows in a canonical order."""
    conn = duckdb.connect(str(database), read_only=True)
    try:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('information_schema', 'pg_catalog', 'main') "
            "ORDER BY 1, 2"
        ).fetchall()
        out: dict[str, dict[str, object]] = {}
        for schema, table in tables:
            columns = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                [schema, table],
            ).fetchall()
            kept = [
                f't."{name}"'
                for name, dtype in columns
                if name not in VOLATILE and "TIMESTAMP" not in dtype and name != "run_name"
            ]
            sql = (
                f'SELECT r.run_name, {", ".join(kept)} FROM "{schema}"."{table}" t '
                f'JOIN "{schema}".runs r USING (run_id)'
            )
            rows = sorted(repr(row) for row in conn.execute(sql).fetchall())
            digest = hashlib.sha256("\n".join(rows).encode()).hexdigest()
            out[f"{schema}.{table}"] = {"rows": len(rows), "sha256": digest}
        return out
    finally:
        conn.close()


if __name__ == "__main__":
    print(json.dumps(table_fingerprints(Path(sys.argv[1])), indent=1, sort_keys=True))
