"""The HTML report: self-contained (nothing to fetch, no script), every run with its four
pictures, the leaderboard linking to them."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

import duckdb

from mlruns_assets.figures.report import write_report
from mlruns_assets_tests.support.stratos_db import (
    SCHEMA,
    STANDARD_RUNS,
    database_with_runs,
    write_runs,
)


class Tags(HTMLParser):
    """Every start tag and its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _parse(text: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(text)
    return parser.tags


def test_report_holds_every_run_and_fetches_nothing(tmp_path: Path) -> None:
    db = database_with_runs(tmp_path / "r.duckdb", STANDARD_RUNS)
    with duckdb.connect(str(db)) as conn:  # a second experiment: both are in the report
        write_runs(conn, STANDARD_RUNS[:2], schema="other_experiment")
    out = tmp_path / "report.html"
    seen: list[tuple[int, int]] = []
    with duckdb.connect(str(db), read_only=True) as conn:
        size = write_report(conn, out, "r.duckdb", on_run=lambda d, t: seen.append((d, t)))
    text = out.read_text()
    assert size == out.stat().st_size and not out.with_name("report.html.partial").exists()
    assert seen[-1] == (6, 6)
    tags = _parse(text)
    assert not [t for t, _ in tags if t in ("script", "link", "iframe", "object")]
    urls = [a.get("src") or a.get("href") or "" for _, a in tags]
    assert all(u.startswith(("data:image/png;base64,", "#")) for u in urls if u)
    images = [a for t, a in tags if t == "img"]
    assert len(images) == 4 * 6
    for image in images:
        png = base64.b64decode((image["src"] or "").removeprefix("data:image/png;base64,"))
        assert png.startswith(b"\x89PNG")
    sections = {a["id"] for t, a in tags if t == "section"}
    links = {(a["href"] or "")[1:] for t, a in tags if t == "a"}
    assert links == sections and f"{SCHEMA}-run_a" in sections and len(sections) == 6
    # The leaderboard comes first, best AUROC first.
    assert text.index(f"#{SCHEMA}-run_a") < text.index(f"#{SCHEMA}-run_c")
    assert text.index(f"#{SCHEMA}-run_c") < text.index(f"#{SCHEMA}-run_b")


def test_report_of_a_database_without_classification_runs(tmp_path: Path) -> None:
    db = tmp_path / "empty.duckdb"
    duckdb.connect(str(db)).close()
    with duckdb.connect(str(db), read_only=True) as conn:
        write_report(conn, tmp_path / "r.html", "empty.duckdb")
    assert "No classification experiment" in (tmp_path / "r.html").read_text()
