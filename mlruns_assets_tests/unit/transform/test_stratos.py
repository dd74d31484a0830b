"""Tests for mlruns_assets.transform.stratos: published case study values plus hand-worked small
cases."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mlruns_assets.transform import stratos as s
from mlruns_assets_tests.support.data import CASE_STUDY


@pytest.fixture(scope="module")
def case_study() -> tuple[np.ndarray, np.ndarray]:
    if not CASE_STUDY.exists():
        pytest.fail(f"case study file missing: {CASE_STUDY}")
    return s.read_case_study(CASE_STUDY)


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------- case study (paper)


def test_read_case_study_shape(case_study: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = case_study
    assert y.shape == p.shape == (894,)
    assert set(np.unique(y).tolist()) == {0, 1}
    assert np.all((p > 0) & (p < 1))
    # First data row of the file: 1 "Malignant" 0.505372221
    assert y[0] == 1 and p[0] == pytest.approx(0.505372221, abs=0)


@pytest.mark.parametrize(
    ("func", "expected"),
    [
        (s.auroc, 0.911385),
        (s.brier, 0.132565),
        (s.scaled_brier, 0.469289),
        (s.o_e_ratio, 1.228075),
        (s.calibration_intercept, 0.809578),
        (s.calibration_slope, 0.933824),
        (lambda y, p: s.net_benefit(y, p, 0.10), 0.442704),
        (lambda y, p: s.standardized_net_benefit(y, p, 0.10), 0.911930),
    ],
    ids=["auroc", "brier", "scaled_brier", "oe", "intercept", "slope", "nb010", "snb010"],
)
def test_published_case_study_values(case_study, func, expected: float) -> None:
    y, p = case_study
    assert func(y, p) == pytest.approx(expected, abs=1e-5)


def test_case_study_decision_curve_matches_net_benefit(case_study) -> None:
    y, p = case_study
    dc = s.decision_curve(y, p, s.DCA_THRESHOLDS)
    expected = [s.net_benefit(y, p, float(t)) for t in s.DCA_THRESHOLDS]
    np.testing.assert_allclose(dc["net_benefit_model"], expected, rtol=0, atol=1e-12)
    i = int(np.flatnonzero(s.DCA_THRESHOLDS == 0.10)[0])
    assert dc["net_benefit_model"][i] == pytest.approx(0.442704, abs=1e-5)


def test_case_study_histogram_counts_sum_per_outcome(case_study) -> None:
    y, p = case_study
    h = s.probability_histogram(y, p)
    assert len(h["count"]) == 20
    assert h["count"][h["outcome"] == 0].sum() == np.sum(y == 0)
    assert h["count"][h["outcome"] == 1].sum() == np.sum(y == 1)
    assert s.calibration_curve(y, p)["count"].sum() == y.size


def test_case_study_auroc_matches_bruteforce_pairs(case_study) -> None:
    # Independent O(n1*n0) Mann-Whitney count with ties = 1/2.
    y, p = case_study
    cases, controls = p[y == 1], p[y == 0]
    diff = cases[:, None] - controls[None, :]
    expected = (np.sum(diff > 0) + 0.5 * np.sum(diff == 0)) / diff.size
    assert s.auroc(y, p) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------- IRLS vs independent likelihood search


def _solve_intercept(y: np.ndarray, offset: np.ndarray) -> float:
    """Bisection on the score sum(y - expit(a + offset)), which decreases strictly in a."""
    lo, hi = -20.0, 20.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if np.sum(y - _expit(mid + offset)) > 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _loglik(y: np.ndarray, eta: np.ndarray) -> float:
    return float(np.sum(y * eta - np.logaddexp(0.0, eta)))


def test_intercept_matches_bisection_and_grid(case_study) -> None:
    y, p = case_study
    lp = np.log(p / (1 - p))
    a_bisect = _solve_intercept(y.astype(float), lp)
    assert s.calibration_intercept(y, p) == pytest.approx(a_bisect, abs=1e-8)
    # A fine grid of the log-likelihood must peak at the same place.
    grid = np.linspace(0.0, 2.0, 20001)  # step 1e-4
    ll = [_loglik(y, a + lp) for a in grid]
    assert s.calibration_intercept(y, p) == pytest.approx(grid[int(np.argmax(ll))], abs=1e-4)


def test_slope_matches_profile_likelihood_search(case_study) -> None:
    y, p = case_study
    yf = y.astype(float)
    lp = np.log(p / (1 - p))

    def profile(b: float) -> float:
        # For fixed slope b the intercept is the root of a monotone score: bisection.
        return _loglik(yf, _solve_intercept(yf, b * lp) + b * lp)

    lo, hi = 0.5, 1.5  # golden-section search on the concave profile log-likelihood
    g = (math.sqrt(5) - 1) / 2
    for _ in range(60):
        c, d = hi - g * (hi - lo), lo + g * (hi - lo)
        if profile(c) > profile(d):
            hi = d
        else:
            lo = c
    assert s.calibration_slope(y, p) == pytest.approx((lo + hi) / 2, abs=1e-6)


# ---------------------------------------------------------------------------- hand-worked cases


def test_auroc_hand_cases() -> None:
    # Pairs (case, control): 0.35>0.1 win, 0.35<0.4 lose, 0.8 beats both -> 3/4.
    assert s.auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # Case 0.2 vs controls (0.2 tie=1/2, 0.5 lose=0); case 0.9 beats both (2) -> 2.5/4.
    assert s.auroc([0, 1, 0, 1], [0.2, 0.2, 0.5, 0.9]) == pytest.approx(0.625)
    # All predictions tied: every pair counts 1/2.
    assert s.auroc([0, 1, 1, 0, 1], [0.3] * 5) == pytest.approx(0.5)
    assert s.auroc([0, 0, 1, 1], [0.0, 0.2, 0.7, 1.0]) == pytest.approx(1.0)
    assert s.auroc([1, 1, 0, 0], [0.0, 0.2, 0.7, 1.0]) == pytest.approx(0.0)


def test_brier_and_scaled_brier_hand() -> None:
    y, p = [0, 1, 1, 0], [0.2, 0.6, 0.9, 0.5]
    # Squared errors 0.04, 0.16, 0.01, 0.25 -> 0.46 / 4 = 0.115.
    assert s.brier(y, p) == pytest.approx(0.115)
    # Prevalence 0.5: reference Brier 0.25 -> 1 - 0.115 / 0.25 = 0.54.
    assert s.scaled_brier(y, p) == pytest.approx(0.54)
    # Exact 0/1 predictions that are right: Brier 0, scaled 1.
    assert s.brier([0, 1], [0.0, 1.0]) == 0.0
    assert s.scaled_brier([0, 1], [0.0, 1.0]) == pytest.approx(1.0)


def test_o_e_ratio_hand() -> None:
    # Observed 2, expected 0.2 + 0.6 + 0.9 + 0.5 = 2.2 -> 0.90909...
    assert s.o_e_ratio([0, 1, 1, 0], [0.2, 0.6, 0.9, 0.5]) == pytest.approx(2 / 2.2)
    assert math.isnan(s.o_e_ratio([0, 1], [0.0, 0.0]))


def test_calibration_intercept_hand() -> None:
    # All p = 0.5 (offset 0): a = logit(mean y) = logit(3/4) = ln 3.
    assert s.calibration_intercept([1, 1, 1, 0], [0.5] * 4) == pytest.approx(math.log(3), abs=1e-9)


def test_calibration_hand_grouped_data() -> None:
    # logit(p) = -1 for four subjects with one event (0.25), +1 for four with three (0.75).
    # Two-group saturated fit: a - b = logit(0.25) = -ln3, a + b = ln3 -> a = 0, b = ln 3.
    p = list(_expit(np.array([-1.0] * 4 + [1.0] * 4)))
    y = [1, 0, 0, 0, 1, 1, 1, 0]
    assert s.calibration_slope(y, p) == pytest.approx(math.log(3), abs=1e-9)


def test_perfectly_calibrated_groups_give_slope_one_intercept_zero() -> None:
    # Observed rates equal the predictions (1/4 at 0.25, 3/4 at 0.75): slope 1, sum(y)=sum(p).
    y = [1, 0, 0, 0, 1, 1, 1, 0]
    p = [0.25] * 4 + [0.75] * 4
    assert s.calibration_slope(y, p) == pytest.approx(1.0, abs=1e-9)
    assert s.calibration_intercept(y, p) == pytest.approx(0.0, abs=1e-9)
    assert s.o_e_ratio(y, p) == pytest.approx(1.0)


def test_calibration_handles_p_exactly_zero_and_one() -> None:
    y = [0, 1, 0, 1, 1, 0, 0, 1]
    p = [0.0, 1.0, 0.3, 0.6, 0.4, 0.7, 0.2, 0.5]
    clipped = [1e-12, 1 - 1e-12, 0.3, 0.6, 0.4, 0.7, 0.2, 0.5]
    slope, icpt = s.calibration_slope(y, p), s.calibration_intercept(y, p)
    assert math.isfinite(slope) and math.isfinite(icpt)
    # Documented behaviour: p is clipped to [1e-12, 1 - 1e-12] before the logit.
    assert slope == pytest.approx(s.calibration_slope(y, clipped), abs=1e-12)
    assert icpt == pytest.approx(s.calibration_intercept(y, clipped), abs=1e-12)


def test_perfect_separation_gives_nan_slope() -> None:
    assert math.isnan(s.calibration_slope([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]))
    # Quasi-complete separation (classes only touch at 0.5) has no finite MLE either.
    assert math.isnan(s.calibration_slope([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9]))
    # Reversed separation too.
    assert math.isnan(s.calibration_slope([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]))
    # The offset model still has an MLE: both classes present, score has a root.
    assert math.isfinite(s.calibration_intercept([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]))


def test_constant_predictions_give_nan_slope() -> None:
    # logit(p) collinear with the intercept: slope not identifiable.
    assert math.isnan(s.calibration_slope([0, 1, 1, 0, 1], [0.4] * 5))


def test_single_class_returns_nan_where_stated() -> None:
    y, p = [1, 1, 1], [0.2, 0.5, 0.9]
    for f in (s.auroc, s.scaled_brier, s.calibration_slope, s.calibration_intercept):
        assert math.isnan(f(y, p)), f.__name__
    assert s.brier(y, p) == pytest.approx((0.64 + 0.25 + 0.01) / 3)
    assert math.isnan(s.standardized_net_benefit([0, 0], [0.2, 0.5], 0.1))


def test_net_benefit_hand() -> None:
    y, p = [1, 0, 1, 0, 0], [0.9, 0.6, 0.4, 0.2, 0.05]
    # t = 0.3: treated 0.9 (case), 0.6 (control), 0.4 (case) -> TP 2, FP 1, n 5.
    # NB = 2/5 - 1/5 * 0.3/0.7 = 0.4 - 0.0857142857 = 0.3142857143.
    assert s.net_benefit(y, p, 0.3) == pytest.approx(0.3142857143, abs=1e-9)
    # t = 0.4 equals a prediction: p >= t treats it. NB = 0.4 - 0.2 * 0.4/0.6 = 0.2666666667.
    assert s.net_benefit(y, p, 0.4) == pytest.approx(0.2666666667, abs=1e-9)
    # Treat all at 0.3: prev 0.4 -> 0.4 - 0.6 * 3/7 = 0.1428571429.
    assert s.net_benefit_treat_all(y, 0.3) == pytest.approx(0.1428571429, abs=1e-9)
    # Standardised: 0.3142857143 / 0.4 = 0.7857142857.
    assert s.standardized_net_benefit(y, p, 0.3) == pytest.approx(0.7857142857, abs=1e-9)
    # p exactly 1 and 0: t = 0.5 treats only the p = 1 case -> NB = 1/2.
    assert s.net_benefit([1, 0], [1.0, 0.0], 0.5) == pytest.approx(0.5)


def test_decision_curve_hand() -> None:
    y, p = [1, 0, 1, 0, 0], [0.9, 0.6, 0.4, 0.2, 0.05]
    dc = s.decision_curve(y, p, [0.3, 0.4, 0.7, 0.95])
    assert set(dc) == {
        "threshold",
        "net_benefit_model",
        "net_benefit_treat_all",
        "net_benefit_treat_none",
        "sensitivity",
        "specificity",
    }
    # t=0.7: only 0.9 treated, TP 1 FP 0 -> 0.2. t=0.95: nobody treated -> 0.
    np.testing.assert_allclose(
        dc["net_benefit_model"], [0.3142857143, 0.2666666667, 0.2, 0.0], atol=1e-9
    )
    # Treat all at 0.4: 0.4 - 0.6 * 0.4/0.6 = 0.0; at 0.7: 0.4 - 0.6 * 7/3 = -1.0.
    assert dc["net_benefit_treat_all"][1] == pytest.approx(0.0, abs=1e-12)
    assert dc["net_benefit_treat_all"][2] == pytest.approx(-1.0)
    np.testing.assert_array_equal(dc["net_benefit_treat_none"], 0.0)
    # Sensitivity TP/2: 1, 1, 0.5, 0; specificity TN/3: 2/3, 2/3, 1, 1.
    np.testing.assert_allclose(dc["sensitivity"], [1, 1, 0.5, 0])
    np.testing.assert_allclose(dc["specificity"], [2 / 3, 2 / 3, 1, 1])
    for t, nb in zip(dc["threshold"], dc["net_benefit_model"], strict=True):
        assert nb == pytest.approx(s.net_benefit(y, p, float(t)), abs=1e-12)


def test_decision_curve_single_class_sens_spec_nan() -> None:
    dc = s.decision_curve([0, 0, 0], [0.1, 0.5, 0.9], [0.2, 0.6])
    assert np.all(np.isnan(dc["sensitivity"]))
    np.testing.assert_allclose(dc["specificity"], [1 / 3, 2 / 3])
    dc = s.decision_curve([1, 1], [0.1, 0.5], [0.2])
    assert np.all(np.isnan(dc["specificity"]))
    assert dc["sensitivity"][0] == pytest.approx(0.5)


def test_dca_and_retention_grids() -> None:
    assert len(s.DCA_THRESHOLDS) == 50
    assert s.DCA_THRESHOLDS[0] == 0.01 and s.DCA_THRESHOLDS[-1] == 0.50
    assert len(s.RETENTION_FRACTIONS) == 20
    assert s.RETENTION_FRACTIONS[0] == 0.05 and s.RETENTION_FRACTIONS[-1] == 1.0
    assert 0.15 in s.RETENTION_FRACTIONS  # exact float, not 0.15000000000000002


def test_calibration_curve_bins_with_edges_and_empty_bins() -> None:
    p = [0.0, 0.05, 0.1, 0.15, 0.95, 1.0]
    y = [0, 0, 1, 0, 1, 1]
    cc = s.calibration_curve(y, p)
    np.testing.assert_array_equal(cc["bin"], np.arange(10))
    np.testing.assert_allclose(cc["bin_lower"], np.arange(10) / 10)
    np.testing.assert_allclose(cc["bin_upper"], np.arange(1, 11) / 10)
    # 0.0, 0.05 -> bin 0; 0.1 (lower edge), 0.15 -> bin 1; 0.95 and 1.0 -> bin 9 (last).
    np.testing.assert_array_equal(cc["count"], [2, 2, 0, 0, 0, 0, 0, 0, 0, 2])
    assert cc["predicted_mean"][0] == pytest.approx(0.025)
    assert cc["predicted_mean"][1] == pytest.approx(0.125)
    assert cc["predicted_mean"][9] == pytest.approx(0.975)
    np.testing.assert_allclose(cc["observed_proportion"][[0, 1, 9]], [0.0, 0.5, 1.0])
    assert np.all(np.isnan(cc["predicted_mean"][2:9]))
    assert np.all(np.isnan(cc["observed_proportion"][2:9]))


def test_calibration_curve_other_bin_count() -> None:
    # 4 bins of width 0.25: 0.25 is a lower edge -> bin 1; 0.74 -> bin 2; 1.0 -> bin 3.
    cc = s.calibration_curve([0, 1, 1], [0.25, 0.74, 1.0], n_bins=4)
    np.testing.assert_array_equal(cc["count"], [0, 1, 1, 1])


def test_probability_histogram_hand() -> None:
    p = [0.0, 0.05, 0.1, 0.15, 0.95, 1.0]
    y = [0, 0, 1, 0, 1, 1]
    h = s.probability_histogram(y, p)
    np.testing.assert_array_equal(h["outcome"], [0] * 10 + [1] * 10)
    np.testing.assert_array_equal(h["bin"], list(range(10)) * 2)
    # Outcome 0: 0.0, 0.05 -> bin 0; 0.15 -> bin 1. Outcome 1: 0.1 -> bin 1; 0.95, 1.0 -> bin 9.
    np.testing.assert_array_equal(h["count"][:10], [2, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(h["count"][10:], [0, 1, 0, 0, 0, 0, 0, 0, 0, 2])
    np.testing.assert_allclose(h["bin_lower"][10:], np.arange(10) / 10)


def test_distribution_stats_hand() -> None:
    y = [0, 0, 0, 0, 1]
    p = [0.1, 0.2, 0.3, 0.4, 0.9]
    d = s.distribution_stats(y, p)
    np.testing.assert_array_equal(d["outcome"], [0, 1])
    np.testing.assert_array_equal(d["n"], [4, 1])
    # Outcome 0: mean 0.25; deviations +-0.05, +-0.15 -> SS 0.05, var 0.05/3.
    assert d["mean"][0] == pytest.approx(0.25)
    assert d["std"][0] == pytest.approx(math.sqrt(0.05 / 3))
    # Linear-interpolation quantiles of 0.1..0.4: positions 0.75, 1.5, 2.25.
    assert d["q25"][0] == pytest.approx(0.175)
    assert d["median"][0] == pytest.approx(0.25)
    assert d["q75"][0] == pytest.approx(0.325)
    assert (d["min"][0], d["max"][0]) == pytest.approx((0.1, 0.4))
    # Outcome 1 has one subject: std undefined, the rest equal 0.9.
    assert math.isnan(d["std"][1])
    assert d["median"][1] == pytest.approx(0.9)


def test_distribution_stats_empty_outcome() -> None:
    d = s.distribution_stats([0, 0], [0.1, 0.3])
    assert d["n"][1] == 0
    for key in ("mean", "std", "median", "q25", "q75", "min", "max"):
        assert math.isnan(d[key][1]), key
    assert d["mean"][0] == pytest.approx(0.2)


def test_retention_curve_n_retain_rule() -> None:
    # n = 40, alternating outcomes so no subset is single-class. int(40 r) = 2, 4, ..., 40;
    # max(10, .) lifts the first five fractions (2, 4, 6, 8, 10) to 10.
    n = 40
    y = np.arange(n) % 2
    p = np.linspace(0.05, 0.95, n)
    rc = s.retention_curve(y, p, np.arange(n, dtype=float))
    np.testing.assert_allclose(rc["retention_fraction"], s.RETENTION_FRACTIONS)
    expected_n = [10, 10, 10, 10, 10] + list(range(12, 41, 2))
    np.testing.assert_array_equal(rc["n_retained"], expected_n)
    # Full retention equals the whole-sample measures.
    assert rc["auroc"][-1] == pytest.approx(s.auroc(y, p))
    assert rc["net_benefit"][-1] == pytest.approx(s.net_benefit(y, p, 0.15))


def test_retention_keeps_lowest_uncertainty_and_skips_single_class() -> None:
    # n = 12: n_retain is 10 for r <= 0.90 (int(10.8) = 10), 11 at 0.95, 12 at 1.00.
    # The 10 least uncertain subjects are all controls -> those fractions are skipped.
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    p = np.linspace(0.1, 0.9, 12)
    unc = np.array([0.95, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.86, 0.9])
    rc = s.retention_curve(y, p, unc)
    np.testing.assert_allclose(rc["retention_fraction"], [0.95, 1.0])
    np.testing.assert_array_equal(rc["n_retained"], [11, 12])
    # At 0.95 subject 0 (most uncertain) is dropped: y = ten 0s then the case at p = 0.9.
    # That case outranks all ten controls -> AUROC 1; Brier computed from those 11 by hand.
    assert rc["auroc"][0] == pytest.approx(1.0)
    keep = np.arange(1, 12)
    assert rc["brier"][0] == pytest.approx(np.mean((y[keep] - p[keep]) ** 2))


def test_retention_stable_order_for_tied_uncertainty() -> None:
    # All uncertainties tied: the first n_retain subjects in input order are kept.
    # First 10 subjects: controls at p = 0.1..0.5 and cases at 0.2..0.6 interleaved.
    y = np.array([0, 1] * 10)
    p = np.array([0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5, 0.6] + [0.5] * 10)
    rc = s.retention_curve(y, p, np.zeros(20), fractions=[0.05])
    assert rc["n_retained"].tolist() == [10]
    # Controls 0.1,0.2,0.3,0.4,0.5 vs cases 0.2..0.6: per case wins+ties/2 = 1.5, 2.5, 3.5, 4.5,
    # 5 -> 17 / 25 = 0.68.
    assert rc["auroc"][0] == pytest.approx(0.68)


def test_retention_all_single_class_returns_empty_columns() -> None:
    rc = s.retention_curve(np.zeros(15), np.full(15, 0.3), np.arange(15.0))
    assert set(rc) == {
        "retention_fraction",
        "n_retained",
        "auroc",
        "brier",
        "scaled_brier",
        "net_benefit",
    }
    assert all(len(v) == 0 for v in rc.values())


def test_bootstrap_ci() -> None:
    # 0..100: linear percentiles sit at positions 2.5 and 97.5 -> values 2.5 and 97.5.
    values = np.arange(101.0)
    assert s.bootstrap_ci(values) == pytest.approx((2.5, 97.5))
    assert s.bootstrap_ci(np.concatenate([values, [np.nan] * 7])) == pytest.approx((2.5, 97.5))
    lo, hi = s.bootstrap_ci([np.nan, np.nan])
    assert math.isnan(lo) and math.isnan(hi)


def test_read_case_study_small_file(tmp_path: Path) -> None:
    f = tmp_path / "cs.txt"
    f.write_text('"Outcome1" "Out1" "pmalwo"\n1 "Malignant" 0.25\n0 "Benign" 0.125\n')
    y, p = s.read_case_study(f)
    assert y.tolist() == [1, 0]
    assert p.tolist() == [0.25, 0.125]


def test_calibration_bins_agree_with_reported_edges() -> None:
    # Values one ulp either side of every edge: each must land in the bin whose reported
    # [bin_lower, bin_upper) contains it (floor(p * 10) gets nextafter(0.9, 0) wrong).
    edges = np.arange(11) / 10
    p = np.concatenate([np.nextafter(edges, 0.0), edges, np.nextafter(edges, 1.0)]).clip(0, 1)
    y = np.zeros_like(p)
    cc = s.calibration_curve(y, p)
    expected = [
        np.sum((p >= lo) & ((p < hi) | (hi == 1.0)))
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]
    np.testing.assert_array_equal(cc["count"], expected)
    assert cc["count"].sum() == p.size


def test_retention_stable_order_with_many_ties() -> None:
    # 300 subjects, uncertainty only 0 or 1 (150 each). With a stable sort the 30 kept at
    # r = 0.10 are the first 30 zero-uncertainty subjects in input order.
    rng = np.random.default_rng(0)
    unc = rng.permutation(np.repeat([0.0, 1.0], 150))
    y = rng.integers(0, 2, 300)
    p = rng.uniform(0, 1, 300)
    rc = s.retention_curve(y, p, unc, fractions=[0.10])
    keep = np.flatnonzero(unc == 0.0)[:30]
    assert rc["n_retained"].tolist() == [30]
    assert rc["brier"][0] == pytest.approx(np.mean((y[keep] - p[keep]) ** 2), abs=1e-15)
