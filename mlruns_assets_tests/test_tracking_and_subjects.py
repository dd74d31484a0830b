"""Experiment slugs, run eligibility and subject re-anonymization (plain functions)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest

from mlruns_assets.runtime.errors import ExtractionError
from mlruns_assets.source.tracking import (
    TrackingStoreError,
    exclusion_reason,
    normalize_tracking_uri,
    slugify,
)
from mlruns_assets.transform.subjects import anonymize, build_subject_map, load_subject_map


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Classification", "classification"),
        ("My Exp--2 (final)", "my_exp_2_final"),
        ("2024 runs", "e_2024_runs"),
        ("Ünïcødé", "n_c_d"),
        ("___", "experiment"),
    ],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


def _run(
    name: str, status: str = "FINISHED", stage: str = "active", tags: dict[str, str] | None = None
) -> mlflow.entities.Run:
    info = mlflow.entities.RunInfo(
        run_id="r",
        experiment_id="1",
        user_id="u",
        status=status,
        start_time=0,
        end_time=None,
        lifecycle_stage=stage,
        run_name=name,
        artifact_uri="file:///x",
    )
    data = mlflow.entities.RunData(
        tags=[mlflow.entities.RunTag(k, v) for k, v in (tags or {}).items()]
    )
    return mlflow.entities.Run(info, data)


def test_exclusion_reasons() -> None:
    finished = ("FINISHED",)
    assert exclusion_reason(_run("ok"), "Classification", finished) is None
    assert exclusion_reason(_run("__SYNTHETIC_x"), "Classification", finished) == "synthetic"
    assert exclusion_reason(_run("ok"), "synth_Classification", finished) == "synthetic"
    assert exclusion_reason(_run("ok", tags={"is_synthetic": "True"}), "C", finished) == "synthetic"
    assert exclusion_reason(_run("ok", stage="deleted"), "C", finished) == "deleted"
    assert exclusion_reason(_run("ok", status="RUNNING"), "C", finished) == "status RUNNING"
    assert exclusion_reason(_run("ok", status="FAILED"), "C", finished) == "status FAILED"
    assert exclusion_reason(_run("ok", status="FAILED"), "C", ("FINISHED", "FAILED")) is None


def test_missing_stores_are_refused_not_created(tmp_path: Path) -> None:
    with pytest.raises(TrackingStoreError, match="not an existing mlruns folder"):
        normalize_tracking_uri(str(tmp_path / "mlruns"))
    with pytest.raises(TrackingStoreError, match="no such SQLite file"):
        normalize_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    assert list(tmp_path.iterdir()) == []


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
