"""A run's curve data read back from its STRATOS tables, and the intervals computed for it."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

from mlruns_assets.figures.curve_data import (
    has_both_classes,
    read_run_curves,
    roc_band,
    roc_curve,
    wilson_interval,
)
from mlruns_assets.transform import stratos
from mlruns_assets_tests.support.stratos_db import SCHEMA, STANDARD_RUNS, database_with_runs


def test_wilson_interval_matches_the_textbook_values() -> None:
    # 5 of 10 and 0 of 20 (Newcombe 1998: 0.2366-0.7634 and 0-0.1611); an empty bin is NaN.
    lower, upper = wilson_interval(np.array([5.0, 0.0, 0.0]), np.array([10.0, 20.0, 0.0]))
    assert lower[:2] == pytest.approx([0.2366, 0.0], abs=1e-4)
    assert upper[:2] == pytest.approx([0.7634, 0.1611], abs=1e-4)
    assert np.isnan(lower[2]) and np.isnan(upper[2])


def test_roc_curve_area_is_the_auroc_ties_included() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(200) < 0.3).astype(np.float64)
    p = np.round(rng.random(200) * 0.6 + 0.3 * y, 1)  # coarse: many ties
    fpr, tpr = roc_curve(y, p)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(stratos.auroc(y, p), abs=1e-12)


def test_roc_band_is_ordered_and_surrounds_the_curve() -> None:
    rng = np.random.default_rng(4)
    y = (np.arange(150) % 2).astype(np.float64)
    p = 1 / (1 + np.exp(-(rng.normal(size=150) + 1.2 * y)))
    grid, lower, upper = roc_band(y, p)
    assert np.all(lower <= upper) and np.any(upper - lower > 0.05)
    fpr, tpr = roc_curve(y, p)
    inside = (np.interp(grid, fpr, tpr) >= lower - 1e-9) & (np.interp(grid, fpr, tpr) <= upper)
    assert inside.mean() > 0.9
    again = roc_band(y, p)  # seeded: the same picture every time
    assert np.array_equal(again[1], lower) and np.array_equal(again[2], upper)


def test_read_run_curves_returns_the_stored_rows(tmp_path: Path) -> None:
    db = database_with_runs(tmp_path / "r.duckdb", STANDARD_RUNS)
    with duckdb.connect(str(db), read_only=True) as conn:
        curves = read_run_curves(conn, SCHEMA, "run_a")
        single = read_run_curves(conn, SCHEMA, "run_d")
        assert read_run_curves(conn, SCHEMA, "no_such_run") is None
        auroc = conn.execute(f"SELECT auroc FROM {SCHEMA}.essential_metrics "
                             "WHERE run_id = 'run_a'").fetchone()  # fmt: skip
    assert curves is not None and single is not None
    assert curves.run_name == STANDARD_RUNS[0].name and (curves.auroc,) == auroc
    assert curves.calibration["count"].sum() == curves.y_true.size == 60
    assert curves.decision["threshold"].size == 50
    assert curves.histogram["count"].sum() == 60
    assert stratos.auroc(curves.y_true, curves.y_prob) == pytest.approx(curves.auroc)
    assert has_both_classes(curves) and not has_both_classes(single)
