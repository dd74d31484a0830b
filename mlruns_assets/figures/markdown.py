"""Markdown for the web UI: the leaderboard's top rows as a table, a PNG as an inline image (a
``data:`` URI, the way Dagster's documentation embeds plots in metadata)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

# (column, header, format): what the UI's table shows of a leaderboard row, in order.
LEADERBOARD_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("rank", "#", "{}"),
    ("run_name", "run", "{}"),
    ("classifier", "classifier", "{}"),
    ("imputation_method", "imputation", "{}"),
    ("outlier_method", "outlier", "{}"),
    ("auroc", "AUROC (95 % CI)", "{:.3f}"),
    ("brier_score", "Brier", "{:.3f}"),
    ("scaled_brier", "scaled Brier", "{:.3f}"),
    ("calibration_slope", "cal. slope", "{:.2f}"),
    ("calibration_intercept", "cal. intercept", "{:.2f}"),
    ("o_e_ratio", "O:E", "{:.2f}"),
    ("net_benefit_5pct", "NB 5 %", "{:.3f}"),
    ("net_benefit_10pct", "NB 10 %", "{:.3f}"),
    ("net_benefit_20pct", "NB 20 %", "{:.3f}"),
    ("n_test", "n", "{}"),
    ("n_events", "events", "{}"),
    ("verdict", "checks", "{}"),
)


def cell(row: Mapping[str, Any], column: str, fmt: str) -> str:
    """One formatted value: NULL as an en dash, AUROC with its CI."""
    value = row.get(column)
    if value is None or value != value:  # NULL or NaN
        return "–"
    text = fmt.format(value)
    if column == "auroc" and row.get("auroc_ci_lower") is not None:
        text += f" ({row['auroc_ci_lower']:.3f}–{row['auroc_ci_upper']:.3f})"
    return text


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def leaderboard_markdown(rows: pa.Table, total: int) -> str:
    """The leaderboard rows given (the top ones) as a Markdown table, and how many are left
    out of it."""
    header = "| " + " | ".join(h for _, h, _ in LEADERBOARD_COLUMNS) + " |"
    rule = "| " + " | ".join("---" for _ in LEADERBOARD_COLUMNS) + " |"
    body = [
        "| " + " | ".join(_escape(cell(row, c, f)) for c, _, f in LEADERBOARD_COLUMNS) + " |"
        for row in rows.to_pylist()
    ]
    if not body:
        return "No committed run yet: extract the experiment first."
    shown = f"Top {len(body)} of {total} runs by AUROC" if total > len(body) else f"{total} runs"
    note = f"{shown}; every run is in the `leaderboard` table."
    return "\n".join([note, "", header, rule, *body])


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def image_markdown(title: str, png: bytes) -> str:
    """A PNG as a Markdown image that needs no file or server to show."""
    return f"![{title}]({png_data_uri(png)})"
