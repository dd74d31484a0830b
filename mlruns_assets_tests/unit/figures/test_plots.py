"""The four pictures of a run: real PNGs, small enough for a partition's metadata."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import duckdb
import pytest
from matplotlib.image import imread

from mlruns_assets.figures.curve_data import CURVES, RunCurves, read_run_curves
from mlruns_assets.figures.markdown import image_markdown
from mlruns_assets.figures.plots import DPI, SIZE_INCHES, render_curves
from mlruns_assets_tests.support.stratos_db import SCHEMA, STANDARD_RUNS, database_with_runs

METADATA_BUDGET_BYTES = 150_000


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RunCurves]:
    db = database_with_runs(tmp_path_factory.mktemp("plots") / "r.duckdb", STANDARD_RUNS)
    with duckdb.connect(str(db), read_only=True) as conn:
        found = {r.run_id: read_run_curves(conn, SCHEMA, r.run_id) for r in STANDARD_RUNS}
    return {k: v for k, v in found.items() if v is not None}


@pytest.mark.parametrize("run_id", ["run_a", "run_d"], ids=["two classes", "single class"])
def test_four_decodable_pngs_under_the_metadata_budget(
    runs: dict[str, RunCurves], run_id: str
) -> None:
    pngs = render_curves(runs[run_id])
    assert list(pngs) == [name for name, _ in CURVES]
    width, height = (round(SIZE_INCHES[0] * DPI), round(SIZE_INCHES[1] * DPI))
    for png in pngs.values():
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        pixels = imread(io.BytesIO(png), format="png")
        assert pixels.shape[:2] == (height, width)
        assert pixels.std() > 0.05  # something is drawn, not a blank canvas
    markdown = sum(len(image_markdown(title, pngs[name])) for name, title in CURVES)
    assert markdown < METADATA_BUDGET_BYTES


def test_pictures_differ_between_runs(runs: dict[str, RunCurves]) -> None:
    a, b = render_curves(runs["run_a"]), render_curves(runs["run_b"])
    assert all(a[name] != b[name] for name, _ in CURVES)


def test_image_markdown_embeds_the_png_itself(runs: dict[str, RunCurves], tmp_path: Path) -> None:
    png = render_curves(runs["run_a"])["roc"]
    text = image_markdown("ROC curve", png)
    assert text.startswith("![ROC curve](data:image/png;base64,") and text.endswith(")")
    assert base64.b64decode(text.split(",", 1)[1][:-1]) == png
