"""The four STRATOS pictures of one run as PNG bytes: calibration curve, decision curve, ROC,
predicted-probability distributions by outcome.

Drawn on matplotlib's object API with the Agg canvas (no pyplot: no global figure state, no
display needed, safe in a Dagster step or the webserver's process). Small and flat on purpose:
at 80 dpi the four together are ~60-100 KB, under the ~150 KB a partition's metadata may carry.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mlruns_assets.figures.curve_data import (
    CURVES,
    RunCurves,
    has_both_classes,
    roc_band,
    roc_curve,
    wilson_interval,
)

DPI = 80
SIZE_INCHES = (4.6, 3.4)
MODEL, REFERENCE, BAND = "#1f4e9c", "#7f7f7f", "#9ab6e6"
UNIT = (-0.01, 1.01)  # a curve along 0 or 1 stays visible inside the frame


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _new_axes(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Axes]:
    fig = Figure(figsize=SIZE_INCHES)
    # Fixed margins: a layout engine measures every label and doubles the drawing time.
    fig.subplots_adjust(left=0.15, right=0.97, bottom=0.15, top=0.91)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3, linewidth=0.5)
    return fig, ax


def calibration_png(curves: RunCurves) -> bytes:
    """Observed proportion against mean predicted risk per bin, its 95 % Wilson band, the ideal
    diagonal; empty bins are gaps."""
    c = curves.calibration
    fig, ax = _new_axes("Calibration curve", "predicted risk", "observed proportion")
    lower, upper = wilson_interval(c["observed_proportion"] * c["count"], c["count"])
    ax.plot([0, 1], [0, 1], linestyle="--", color=REFERENCE, linewidth=1, label="ideal")
    ax.fill_between(c["predicted_mean"], lower, upper, color=BAND, alpha=0.5, label="95 % CI")
    ax.plot(
        c["predicted_mean"], c["observed_proportion"], marker="o", markersize=3, color=MODEL,
        linewidth=1.2, label="model",
    )  # fmt: skip
    ax.set_xlim(*UNIT)
    ax.set_ylim(*UNIT)
    ax.legend(fontsize=7, loc="upper left")
    return _png(fig)


def decision_png(curves: RunCurves) -> bytes:
    """Net benefit of the model, treat all and treat none over the threshold grid."""
    d = curves.decision
    fig, ax = _new_axes("Decision curve", "threshold probability", "net benefit")
    ax.plot(d["threshold"], d["model"], color=MODEL, linewidth=1.4, label="model")
    ax.plot(d["threshold"], d["treat_all"], color="#c0504d", linewidth=1, label="treat all")
    ax.plot(d["threshold"], d["treat_none"], color=REFERENCE, linewidth=1, label="treat none")
    top = float(np.nanmax(np.r_[d["model"], d["treat_all"], 0.0]))
    ax.set_ylim(-0.05, max(top * 1.1, 0.05))
    ax.legend(fontsize=7, loc="upper right")
    return _png(fig)


def roc_png(curves: RunCurves) -> bytes:
    """ROC from the per-subject predictions with a bootstrap band; the stored AUROC and its CI
    in the legend. A single-class test set has no ROC: the picture says so."""
    fig, ax = _new_axes("ROC curve", "1 - specificity", "sensitivity")
    ax.plot([0, 1], [0, 1], linestyle="--", color=REFERENCE, linewidth=1, label="chance")
    if has_both_classes(curves):
        grid, lower, upper = roc_band(curves.y_true, curves.y_prob)
        fpr, tpr = roc_curve(curves.y_true, curves.y_prob)
        ax.fill_between(grid, lower, upper, color=BAND, alpha=0.5, step=None, label="95 % band")
        lo, hi = curves.auroc_ci
        ci = f" ({lo:.3f}-{hi:.3f})" if lo is not None and hi is not None else ""
        auroc = f"AUROC {curves.auroc:.3f}{ci}" if curves.auroc is not None else "model"
        ax.plot(fpr, tpr, color=MODEL, linewidth=1.4, drawstyle="default", label=auroc)
    else:
        ax.text(0.5, 0.5, "single-class test set: no ROC", ha="center", fontsize=9)
    ax.set_xlim(*UNIT)
    ax.set_ylim(*UNIT)
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def distributions_png(curves: RunCurves) -> bytes:
    """Histogram of predicted probabilities for controls (outcome 0) and cases (outcome 1)."""
    h = curves.histogram
    fig, ax = _new_axes("Predicted probabilities by outcome", "predicted risk", "subjects")
    for outcome, colour, label in ((0, REFERENCE, "outcome 0"), (1, MODEL, "outcome 1")):
        rows = h["outcome"] == outcome
        left, width = h["bin_lower"][rows], h["bin_upper"][rows] - h["bin_lower"][rows]
        ax.bar(
            left, h["count"][rows], width=width, align="edge", alpha=0.55, color=colour,
            edgecolor="white", linewidth=0.5, label=label,
        )  # fmt: skip
    ax.set_xlim(0, 1)
    ax.legend(fontsize=7, loc="upper center")
    return _png(fig)


def render_curves(curves: RunCurves) -> dict[str, bytes]:
    """The four pictures, keyed as ``CURVES`` names them, in that order."""
    render = {
        "calibration": calibration_png,
        "decision_curve": decision_png,
        "roc": roc_png,
        "probability_distributions": distributions_png,
    }
    return {name: render[name](curves) for name, _ in CURVES}
