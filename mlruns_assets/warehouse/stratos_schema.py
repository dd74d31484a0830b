"""Declarations of the STRATOS tables (see ``tables.py`` for how declarations are used)."""

from __future__ import annotations

import pyarrow as pa

from mlruns_assets.warehouse.tables import UTC_TS, TableSpec

F64, I64, STR = pa.float64(), pa.int64(), pa.string()


def _schema(*cols: tuple[str, pa.DataType, bool]) -> pa.Schema:
    return pa.schema(
        [pa.field("run_id", STR, nullable=False)]
        + [pa.field(name, type_, nullable=nullable) for name, type_, nullable in cols]
    )


ESSENTIAL_METRICS = TableSpec(
    "essential_metrics",
    _schema(
        ("run_name", STR, True),
        ("classifier", STR, True),
        ("featurization", STR, True),
        ("imputation_method", STR, True),
        ("outlier_method", STR, True),
        ("auroc", F64, True),
        ("auroc_ci_lower", F64, True),
        ("auroc_ci_upper", F64, True),
        ("calibration_slope", F64, True),
        ("calibration_intercept", F64, True),
        ("o_e_ratio", F64, True),
        ("brier_score", F64, False),
        ("scaled_brier", F64, True),
        ("net_benefit_5pct", F64, False),
        ("net_benefit_10pct", F64, False),
        ("net_benefit_15pct", F64, False),
        ("net_benefit_20pct", F64, False),
        ("n_test", I64, False),
        ("n_events", I64, False),
        ("prevalence", F64, False),
        ("extracted_at", UTC_TS, False),
    ),
    "STRATOS essential measures per run: discrimination (AUROC with bootstrap CI), calibration "
    "(slope, calibration-in-the-large intercept, O:E), Brier and net benefit at 5-20 %.",
)
SUPPLEMENTARY_METRICS = TableSpec(
    "supplementary_metrics",
    _schema(
        *(
            (c, F64, True)
            for c in ("f1", "accuracy", "aupr", "sensitivity", "specificity", "ppv", "npv")
        )
    ),
    "Improper classification measures (bootstrap means), kept apart from the essential ones.",
)
CALIBRATION_CURVES = TableSpec(
    "calibration_curves",
    _schema(
        ("bin", I64, False),
        ("bin_lower", F64, False),
        ("bin_upper", F64, False),
        ("predicted_mean", F64, True),
        ("observed_proportion", F64, True),
        ("count", I64, False),
    ),
    "Calibration plot data: 10 equal-width bins of predicted probability.",
)
PROBABILITY_DISTRIBUTIONS = TableSpec(
    "probability_distributions",
    _schema(
        ("outcome", I64, False),
        ("bin", I64, False),
        ("bin_lower", F64, False),
        ("bin_upper", F64, False),
        ("count", I64, False),
    ),
    "Histogram of predicted probabilities per outcome: 10 equal bins on [0, 1].",
)
DCA_CURVES = TableSpec(
    "dca_curves",
    _schema(
        ("threshold", F64, False),
        ("net_benefit_model", F64, False),
        ("net_benefit_treat_all", F64, False),
        ("net_benefit_treat_none", F64, False),
        ("sensitivity", F64, True),
        ("specificity", F64, True),
    ),
    "Decision curve: net benefit of the model, treat-all and treat-none at thresholds 0.01-0.50.",
)
PREDICTIONS = TableSpec(
    "predictions",
    _schema(
        ("subject_code", STR, False),
        ("y_true", I64, False),
        ("y_prob", F64, False),
        ("y_prob_std", F64, True),
    ),
    "Per-subject test predictions: bootstrap-mean probability and its bootstrap std.",
)
RETENTION_METRICS = TableSpec(
    "retention_metrics",
    _schema(
        ("retention_fraction", F64, False),
        ("n_retained", I64, False),
        ("auroc", F64, True),
        ("brier", F64, False),
        ("scaled_brier", F64, True),
        ("net_benefit", F64, False),
    ),
    "Measures on the subjects with the lowest uncertainty, at retention fractions 0.05-1.00.",
)
COHORT_METRICS = TableSpec(
    "cohort_metrics",
    _schema(
        ("retention_fraction", F64, False),
        ("n_retained", I64, False),
        ("n_events", I64, False),
        ("prevalence", F64, False),
        ("mean_y_prob", F64, False),
        ("mean_uncertainty", F64, False),
    ),
    "Who is retained at each retention fraction: size, events, prevalence, mean risk.",
)
DISTRIBUTION_STATS = TableSpec(
    "distribution_stats",
    _schema(
        ("outcome", I64, False),
        ("n", I64, False),
        ("mean", F64, True),
        ("std", F64, True),
        ("median", F64, True),
        ("q25", F64, True),
        ("q75", F64, True),
        ("min", F64, True),
        ("max", F64, True),
    ),
    "Summary of predicted probabilities per outcome.",
)

STRATOS_TABLES = [
    ESSENTIAL_METRICS,
    SUPPLEMENTARY_METRICS,
    CALIBRATION_CURVES,
    PROBABILITY_DISTRIBUTIONS,
    DCA_CURVES,
    PREDICTIONS,
    RETENTION_METRICS,
    COHORT_METRICS,
    DISTRIBUTION_STATS,
]
