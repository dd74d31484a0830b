"""The README's promises that can drift: the table reference and the CI test command."""

from __future__ import annotations

import re
from pathlib import Path

from mlruns_assets.cli.tables import documented_tables
from mlruns_assets.warehouse.tables import markdown_reference

ROOT = Path(__file__).resolve().parents[1]


def test_table_reference_matches_the_declarations() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- tables:start -->\n(.*)<!-- tables:end -->", readme, re.S)
    assert match, "README lost its table reference markers"
    assert match.group(1) == markdown_reference(documented_tables()), (
        "README table reference is stale: regenerate with `uv run mlruns-assets tables`"
    )


def test_ci_runs_the_readme_test_command() -> None:
    readme_lines = (ROOT / "README.md").read_text().splitlines()
    test_line = readme_lines[readme_lines.index("```bash") + 2]
    assert test_line.startswith("pip install uv && ")
    command = test_line.removeprefix("pip install uv && ").replace("uv ", "", 1)
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"\nuv {command}\n" in ci


def test_module_map_matches_the_package_tree() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- modules:start -->\n(.*)<!-- modules:end -->", readme, re.S)
    assert match, "README lost its module map markers"
    listed = set(re.findall(r"`([\w/]+\.py)`", match.group(1)))
    package = ROOT / "mlruns_assets"
    actual = {
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if p.name != "__init__.py" and ".venv" not in p.parts
    }
    assert listed == actual, f"not in the README: {actual - listed}; gone: {listed - actual}"


def test_every_package_says_its_concern() -> None:
    for init in (ROOT / "mlruns_assets").rglob("__init__.py"):
        text = init.read_text().strip()
        assert text.startswith('"""') and len(text) > 40, f"{init} has no docstring"
