"""The test data files (``mlruns_assets_tests/data/``), named once."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"

# The case study published with the STRATOS paper (894 patients), copied from the project's
# shared reference so the tests need nothing outside the repository.
CASE_STUDY = DATA / "stratos_case_study.txt"

# Table fingerprints of the demo store extracted by the code before the package was split into
# layers (written with ``support/golden.py``).
DEMO_GOLDEN = DATA / "demo_golden.json"
