"""Re-anonymization of subject codes and the subject map file (plain functions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlruns_assets.runtime.errors import ExtractionError
from mlruns_assets.transform.subjects import anonymize, build_subject_map, load_subject_map


def test_subject_map_csv_and_yaml(tmp_path: Path) -> None:
    csv_path = tmp_path / "map.csv"
    csv_path.write_text("original,anonymized\nPLR0001,H001\nPLR0002,G001\n")
    yaml_path = tmp_path / "map.yaml"
    yaml_path.write_text("subjects:\n  PLR0001: H001\n  PLR0002: G001\n")
    assert (
        load_subject_map(csv_path)
        == load_subject_map(yaml_path)
        == {"PLR0001": "H001", "PLR0002": "G001"}
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("code,anon\nPLR0001,H001\n")
    with pytest.raises(ExtractionError, match="header must be 'original,anonymized'"):
        load_subject_map(bad)


def test_anonymize_maps_every_code_or_fails_with_the_count() -> None:
    mapping = {"PLR0001": "H001", "PLR0002": "G001"}
    out = anonymize(np.array(["PLR0002", "PLR0001", "PLR0002"]), mapping, "metrics/m.pickle")
    assert out.tolist() == ["G001", "H001", "G001"]
    with pytest.raises(ExtractionError, match="2 subject code\\(s\\) in metrics/m.pickle"):
        anonymize(np.array(["PLR0001", "PLR0003", "PLR0004"]), mapping, "metrics/m.pickle")


def test_build_subject_map_sorted_per_class() -> None:
    rows = build_subject_map([("PLR0009", 0), ("PLR0003", 1), ("PLR0001", 0), ("PLR0002", 1)])
    assert rows == [
        ("PLR0001", "H001"),
        ("PLR0009", "H002"),
        ("PLR0002", "G001"),
        ("PLR0003", "G002"),
    ]
    with pytest.raises(ExtractionError, match="PLR0001 has label 0"):
        build_subject_map([("PLR0001", 0), ("PLR0001", 1)])
