"""What a researcher sees, in a real browser (headless Chromium): the demo's leaderboard as a
table on its asset page, a run's four curves on its partition's materialization, and the shared
report opened from disk without a console error. Screenshots go to the test's folder (and to
``$README_SCREENSHOTS`` when set: that is how the README's pictures are made)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import pytest

from mlruns_assets.runtime.instance import default_dagster_home
from mlruns_assets.runtime.settings import Settings
from mlruns_assets_tests.support.browser import chromium, screenshot
from mlruns_assets_tests.support.cli import run_cli
from mlruns_assets_tests.support.webserver import running_webserver

RUNS = 4  # from 4 rows on, Dagster shows the table behind "Show Markdown"
SCHEMA = "classification"


def _markdown_value(page: Any, url: str, inline: str, folder: Path) -> tuple[Any, str]:
    """Open an asset page and show its Markdown metadata value; returns the element showing
    it and the CSS scope of the value inside the page.
    Dagster renders a short value in the metadata table itself (``inline`` finds it there) and
    a long one behind "[Show Markdown]", in a dialog."""
    page.goto(url)
    link = page.get_by_text("[Show Markdown]").first
    try:
        link.or_(page.locator(inline).first).wait_for(timeout=90_000)
    except Exception:
        page.screenshot(path=str(folder / "failed.png"))
        raise
    # The first visit to a new instance may open Dagster's newsletter prompt over the page.
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=4_000)
        skip.click()
    except Exception:  # no prompt this time
        pass
    if not link.is_visible():
        return page.locator("body"), "td"
    link.click()
    dialog = page.locator("[role=dialog]")
    dialog.wait_for()
    # Settled: no screenshot of the dialog half faded in (Blueprint's transition classes).
    page.wait_for_function(
        "() => !document.querySelector('[class*=-appear-active], [class*=-enter-active]')"
    )
    return dialog, "[role=dialog]"


def _loaded_image_widths(page: Any, scope: str) -> list[int]:
    """naturalWidth of every image in ``scope`` once each has finished loading."""
    page.wait_for_function(
        f"() => [...document.querySelectorAll('{scope} img')].every(i => i.complete)",
        timeout=30_000,
    )
    return list(
        page.evaluate(f"[...document.querySelectorAll('{scope} img')].map(i => i.naturalWidth)")
    )


@pytest.mark.timeout(900)
def test_leaderboard_curves_and_report_in_a_browser(tmp_path: Path) -> None:
    code, output = run_cli("quickstart", str(tmp_path / "demo"), "--runs", str(RUNS))
    assert code == 0, output
    assert f"1 leaderboard(s) rebuilt, curves drawn for {RUNS} run(s)" in output
    database = tmp_path / "demo" / "results.duckdb"
    report = tmp_path / "report.html"
    code, output = run_cli("report", "--db", str(database), "--out", str(report))
    assert code == 0, output
    with duckdb.connect(str(database), read_only=True) as conn:
        ranked = conn.execute(
            f"SELECT run_id, run_name FROM {SCHEMA}.leaderboard ORDER BY rank"
        ).fetchall()
    best = ranked[0]
    keys = [f"{name}@{run_id}" for run_id, name in ranked]
    store = tmp_path / "demo" / "store"
    settings = Settings(
        tracking_uri=f"sqlite:///{store / 'mlflow.db'}",
        database=str(database),
        subject_map=str(store / "subject_map.csv"),
    )
    home = default_dagster_home(database)
    with running_webserver(settings, home, tmp_path) as (port, _), chromium(tmp_path) as browser:
        page = browser.new_page()
        base = f"http://127.0.0.1:{port}/assets/{SCHEMA}"

        _, scope = _markdown_value(page, f"{base}/leaderboard", "td table", tmp_path)
        rows = page.locator(f"{scope} table tbody tr")
        assert rows.count() == RUNS
        assert best[1] in rows.first.inner_text()
        assert "AUROC (95 % CI)" in page.locator(f"{scope} table thead").last.inner_text()
        screenshot(page, tmp_path / "leaderboard.png")

        # The partitions page finds runs by a part of their names, in any case: here the
        # imputation method of the best run.
        page.goto(f"{base}/stratos?view=partitions")
        search = page.get_by_placeholder("Filter by name…")
        search.wait_for(timeout=90_000)
        term = "__" + best[1].split("__")[2].lower() + "__"
        expected = [k for k in keys if term in k.lower()]
        search.fill(term)
        # Each listed key is drawn truncated in the middle; its full text is kept for measuring.
        listed = page.locator("[class*=MiddleTruncate_measure]")
        listed.filter(has_text=keys[0]).wait_for(state="attached", timeout=30_000)
        page.wait_for_timeout(1_000)  # the filter has settled: nothing else comes back
        assert [k for k in keys if listed.filter(has_text=k).count()] == expected
        page.get_by_text(best[1][:12]).first.click()  # its materialization, on the right
        page.get_by_text("run_name").first.wait_for(timeout=30_000)
        screenshot(page, tmp_path / "partitions_search.png")

        url = f"{base}/stratos_curves?partition={quote(keys[0])}"
        _, scope = _markdown_value(page, url, "td img", tmp_path)
        widths = _loaded_image_widths(page, scope)
        assert len(widths) == 4 and all(w > 0 for w in widths), widths
        titles = page.locator(f"{scope} img").evaluate_all("images => images.map(i => i.alt)")
        assert titles == [
            "Calibration curve",
            "Decision curve",
            "ROC curve",
            "Predicted probabilities by outcome",
        ]
        screenshot(page, tmp_path / "curves.png")

        # The report from disk: nothing to fetch, nothing to complain about.
        errors: list[str] = []
        requests: list[str] = []
        report_page = browser.new_page()
        report_page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        report_page.on("pageerror", lambda e: errors.append(str(e)))
        report_page.on("request", lambda r: requests.append(r.url))
        report_page.goto(report.as_uri())
        report_page.wait_for_load_state("load")
        widths = _loaded_image_widths(report_page, "body")
        assert len(widths) == 4 * RUNS and all(w > 0 for w in widths), widths
        assert report_page.locator("table tr").count() == 1 + RUNS
        assert errors == []
        assert all(u.startswith(("file:", "data:")) for u in requests), requests
        screenshot(report_page, tmp_path / "report.png")
