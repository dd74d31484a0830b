"""Smoke test of the curves benchmark (benchmarks/curves_bench.py) at a tiny size: it runs end to
end and reports every figure it promises. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_curves_bench_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "curves.json"
    done = subprocess.run(
        [sys.executable, "curves_bench.py", "--runs", "2", "--bootstraps", "20"]
        + ["--workdir", str(tmp_path / "work"), "--out", str(out)],
        cwd=ROOT / "benchmarks",
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["runs"] == 2 and len(report["loadavg_start"]) == 3
    assert report["extract"]["partition_duration"]["median_ms"] > 0
    assert report["render"]["draw"]["median_ms"] > 0
    assert 0 < report["render"]["metadata_kb_max"] < 150
    assert report["curves_job"]["wall_per_partition_ms"] > 0
    assert report["ratio"]["render_over_partition_duration"] > 0
