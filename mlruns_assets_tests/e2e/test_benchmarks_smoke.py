"""Smoke test of the benchmark harness (benchmarks/run.py) at a tiny size.

Runs the real harness in a child process on a 3-run store: every variant must report positive
times, and the row-by-row exporter (a), the physical floor, the project floor (b) and
``mlruns-assets extract`` (c1, c1_stock, c2) must have written the same essential_metrics for
the same runs. The backfill variant (d) and the signals are skipped: (d) starts
dagster-webserver and dagster-daemon and waits for the backfill daemon's 30 s loop, over a
minute even for 3 runs. No timing is asserted.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "benchmarks" / "run.py"
RUNS = 3


def _essential(db: Path) -> dict[str, dict[str, Any]]:
    with duckdb.connect(str(db), read_only=True) as conn:
        cursor = conn.execute(
            "SELECT * EXCLUDE (extracted_at) FROM classification.essential_metrics"
        )
        names = [d[0] for d in cursor.description]
        return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float):
        return math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-12)
    return bool(x == y)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, Path]:
    tmp = tmp_path_factory.mktemp("bench")
    work, out = tmp / "work", tmp / "out" / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            "--runs",
            str(RUNS),
            "--bootstraps",
            "20",
            "--sweep",
            "2,3",
            "--commit-partitions",
            "2",
            "--skip-backfill",
            "--skip-signals",
            "--workdir",
            str(work),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(out.read_text()), work, out


def test_every_variant_reports_positive_times(
    harness: tuple[dict[str, Any], Path, Path],
) -> None:
    report, _, out = harness
    variants = report["variants"]
    extracts = ("c1", "c1_stock", "c2", "c100")
    floors = ("floor_physical", "b", "a100")
    assert set(variants) == {*extracts, *floors, "d", "resume"}
    assert variants["d"] == {"skipped": True}
    for name in (*extracts, *floors, "resume"):
        result = variants[name]
        assert result["wall_s"] > 0 and result["cpu_s"] > 0, name
        assert result["peak_rss_mb"] > result["import_rss_mb"] > 0, name
    for name in extracts:
        assert variants[name]["detail"]["materialized"] == RUNS, name
    assert variants["resume"]["detail"]["materialized"] == 0
    assert variants["resume"]["detail"]["opened_no_artifact"] is True
    assert {(p["variant"], p["runs"]) for p in report["sweep"]} == {
        (v, n) for v in ("floor_physical", "extract") for n in (2, 3)
    }
    assert all(p["wall_s"] > 0 for p in report["sweep"])
    assert report["commit_patterns"]["per_partition"]["ms_per_partition"] > 0
    assert out.with_suffix(".md").read_text().startswith("# Extraction benchmark")
    assert out.with_suffix(".png").stat().st_size > 0


def test_baseline_floor_and_extract_write_the_same_essential_metrics(
    harness: tuple[dict[str, Any], Path, Path],
) -> None:
    report, work, _ = harness
    # The first-100 pair ran on the subset store (its own run ids): a100 against c100.
    pairs = [("a100", "c100")] + [(v, "c1") for v in ("floor_physical", "b", "c1_stock", "c2")]
    for variant, against in pairs:
        reference = _essential(work / f"{against}.duckdb")
        assert len(reference) == RUNS
        rows = _essential(work / f"{variant}.duckdb")
        assert set(rows) == set(reference), variant
        for run_id, row in rows.items():
            diffs = {k: (v, reference[run_id][k]) for k, v in row.items()}
            bad = {k: pair for k, pair in diffs.items() if not _same(*pair)}
            assert not bad, (variant, run_id, bad)
    for variant in ("floor_physical", "b", "c1_stock", "c2"):
        consistency = report["consistency"][f"N={RUNS}"]["variants"][variant]
        assert consistency["same_runs"] and consistency["same_row_counts"], variant
        assert consistency["max_abs_diff"] <= 1e-12 and consistency["null_mismatches"] == 0
