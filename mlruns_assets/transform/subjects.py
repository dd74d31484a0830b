"""Re-anonymization of subject codes.

Original codes (``PLR`` + 4 digits) are private. With a subject map configured, every code
written passes through it, and a code missing from the map fails the partition: an original code
never reaches the database. The map itself is never written to the database.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import yaml

from mlruns_assets.runtime.errors import ExtractionError

# Prefixes of anonymized codes: controls, cases, and subjects whose class no run records (seen
# only in imputation runs, which carry no labels).
CLASS_PREFIXES = {0: "H", 1: "G", None: "S"}
SHOWN_CODES = 5


class SubjectMap(dict[str, str]):
    """Original -> anonymized codes, and the file they came from (named in errors)."""

    def __init__(self, mapping: dict[str, str], source: str) -> None:
        super().__init__(mapping)
        self.source = source


def load_subject_map(path: str | Path) -> SubjectMap:
    """Read a CSV with header ``original,anonymized``, or a YAML mapping ``original: anonymized``
    (optionally under a top-level ``subjects:`` or ``mapping:`` key)."""
    return SubjectMap(_read_map(Path(path)), str(path))


def _read_map(path: Path) -> dict[str, str]:
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
    """Map every code, or fail naming ``where``, the map file and the first unmapped codes."""
    as_str = np.asarray(codes).astype(str)
    if mapping is None:
        return as_str
    unique, inverse = np.unique(as_str, return_inverse=True)
    missing = [c for c in unique if c not in mapping]
    if missing:
        shown = ", ".join(missing[:SHOWN_CODES]) + (", ..." if len(missing) > SHOWN_CODES else "")
        source = getattr(mapping, "source", "")
        raise ExtractionError(
            f"{len(missing)} subject code(s) in {where} are not in the subject map"
            f"{' ' + source if source else ''} ({shown}); add them with `mlruns-assets subject-map`"
        )
    return np.array([mapping[c] for c in unique], dtype=object)[inverse].astype(str)


def extend_subject_map(
    existing: list[tuple[str, str]], labels: Mapping[str, int | None]
) -> list[tuple[str, str]]:
    """The existing assignments unchanged, then every new code numbered after the highest
    existing number of its class prefix, in sorted order: rerunning never renumbers a subject.
    ``labels`` holds each subject's class (0 control, 1 case, None unknown)."""
    known = {original for original, _ in existing}
    rows = list(existing)  # bounded: one row per subject of the study
    for label, prefix in CLASS_PREFIXES.items():
        used = [
            int(anon[len(prefix) :])
            for _, anon in existing
            if anon.startswith(prefix) and anon[len(prefix) :].isdigit()
        ]
        start = max(used, default=0) + 1
        new = sorted(c for c, lab in labels.items() if lab == label and c not in known)
        rows += [(code, f"{prefix}{i:03d}") for i, code in enumerate(new, start=start)]
    return rows


def build_subject_map(codes_with_labels: Iterable[tuple[str, int]]) -> list[tuple[str, str]]:
    """``H001...`` for controls and ``G001...`` for cases, in sorted order per class."""
    labels: dict[str, int | None] = {}
    for code, label in codes_with_labels:
        record_label(labels, code, int(label))
    return extend_subject_map([], labels)


def record_label(labels: dict[str, int | None], code: str, label: int | None) -> None:
    """Note a subject's class; a known class wins over unknown, two known classes must agree."""
    previous = labels.get(code)
    if previous is not None and label is not None and previous != label:
        raise ExtractionError(f"subject {code} has label {previous} in one run, {label} in another")
    if previous is None:
        labels[code] = label


def write_subject_map(rows: list[tuple[str, str]], path: Path) -> None:
    """Write the map (mode 0600 from the start), replacing the file only once complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["original", "anonymized"])
        writer.writerows(rows)
    os.replace(partial, path)
    path.chmod(0o600)
