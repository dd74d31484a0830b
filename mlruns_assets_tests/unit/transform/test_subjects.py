"""Re-anonymization of subject codes and the subject map file (plain functions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlruns_assets.runtime.errors import ExtractionError
from mlruns_assets.transform.subjects import (
    anonymize,
    build_subject_map,
    extend_subject_map,
    load_subject_map,
    record_label,
    write_subject_map,
)


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


def test_unmapped_codes_are_named_with_the_map_file(tmp_path: Path) -> None:
    path = tmp_path / "map.csv"
    path.write_text("original,anonymized\nPLR0001,H001\n")
    mapping = load_subject_map(path)
    codes = np.array([f"PLR{i:04d}" for i in range(1, 9)])
    with pytest.raises(ExtractionError) as failure:
        anonymize(codes, mapping, "metrics/metrics_x.pickle")
    message = str(failure.value)
    assert f"7 subject code(s) in metrics/metrics_x.pickle are not in the subject map {path}" in (
        message
    )
    assert "(PLR0002, PLR0003, PLR0004, PLR0005, PLR0006, ...)" in message


def test_extending_a_map_keeps_every_assignment_and_appends_per_class() -> None:
    first = extend_subject_map([], {"PLR0009": 0, "PLR0002": 1, "PLR0005": 0, "PLR0100": None})
    assert first == [
        ("PLR0005", "H001"),
        ("PLR0009", "H002"),
        ("PLR0002", "G001"),
        ("PLR0100", "S001"),
    ]
    # New subjects (one sorting before the existing ones) never renumber the old ones.
    labels: dict[str, int | None] = {c: lab for c, lab in [("PLR0001", 0), ("PLR0003", 1)]}
    labels |= {"PLR0005": 0, "PLR0101": None}
    second = extend_subject_map(first, labels)
    assert second[: len(first)] == first
    assert second[len(first) :] == [("PLR0001", "H003"), ("PLR0003", "G002"), ("PLR0101", "S002")]
    assert extend_subject_map(second, labels) == second  # nothing new: the same map


def test_a_known_class_wins_over_unknown_and_two_classes_conflict() -> None:
    labels: dict[str, int | None] = {}
    record_label(labels, "PLR0001", None)
    record_label(labels, "PLR0001", 1)
    record_label(labels, "PLR0001", None)
    assert labels == {"PLR0001": 1}
    with pytest.raises(ExtractionError, match="label 1 in one run, 0 in another"):
        record_label(labels, "PLR0001", 0)


def test_the_map_is_private_from_its_first_byte(tmp_path: Path) -> None:
    path = tmp_path / "private" / "map.csv"
    write_subject_map([("PLR0001", "H001")], path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert not list(path.parent.glob(".*partial"))
    assert load_subject_map(path) == {"PLR0001": "H001"}
