"""Re-anonymization of subject codes.

Original codes (``PLR`` + 4 digits) are private. With a subject map configured, every code
written passes through it, and a code missing from the map fails the partition: an original code
never reaches the database. The map itself is never written to the database.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import yaml

from mlruns_assets.runtime.errors import ExtractionError


def load_subject_map(path: str | Path) -> dict[str, str]:
    """Read a CSV with header ``original,anonymized``, or a YAML mapping ``original: anonymized``
    (optionally under a top-level ``subjects:`` or ``mapping:`` key)."""
    path = Path(path)
    if not path.is_file():
        raise ExtractionError(f"subject map {path} does not exist")
    if path.suffix.lower() in (".yaml", ".yml"):
        data = yaml.safe_load(path.read_text()) or {}
        if (
            isinstance(data, dict)
            and len(data) == 1
            and next(iter(data)) in ("subjects", "mapping")
        ):
            data = next(iter(data.values()))
        if not isinstance(data, dict):
            raise ExtractionError(f"subject map {path}: expected a mapping original -> anonymized")
        return {str(k): str(v) for k, v in data.items()}
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"original", "anonymized"} <= set(reader.fieldnames):
            raise ExtractionError(f"subject map {path}: header must be 'original,anonymized'")
        return {row["original"].strip(): row["anonymized"].strip() for row in reader}


def anonymize(codes: np.ndarray, mapping: dict[str, str] | None, where: str) -> np.ndarray:
    """Map every code, or fail naming ``where`` and how many codes are unmapped."""
    as_str = np.asarray(codes).astype(str)
    if mapping is None:
        return as_str
    unique, inverse = np.unique(as_str, return_inverse=True)
    missing = [c for c in unique if c not in mapping]
    if missing:
        raise ExtractionError(
            f"{len(missing)} subject code(s) in {where} are not in the subject map"
        )
    return np.array([mapping[c] for c in unique], dtype=object)[inverse].astype(str)


def build_subject_map(codes_with_labels: Iterable[tuple[str, int]]) -> list[tuple[str, str]]:
    """``H001...`` for controls and ``G001...`` for cases, in sorted order per class."""
    labels: dict[str, int] = {}
    for code, label in codes_with_labels:
        previous = labels.setdefault(
            code, int(label)
        )  # bounded: one label per distinct subject code
        if previous != int(label):
            raise ExtractionError(
                f"subject {code} has label {previous} in one run, {label} in another"
            )
    rows: list[tuple[str, str]] = []
    for label, prefix in ((0, "H"), (1, "G")):
        members = sorted(c for c, lab in labels.items() if lab == label)
        rows += [(code, f"{prefix}{i:03d}") for i, code in enumerate(members, start=1)]
    return rows


def write_subject_map(rows: list[tuple[str, str]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["original", "anonymized"])
        writer.writerows(rows)
    path.chmod(0o600)
