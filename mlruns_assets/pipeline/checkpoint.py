"""What a partition's status vouches for, as plain decisions.

A partition is done only for rows that exist in *this* database, written under *these* settings,
from *this* version of the MLflow run. The settings are a fingerprint (``SettingsFingerprint``):
the experiment's kind, the subject map's content and the version of the extraction code and
table declarations; it is the extraction assets' Dagster code version, so the UI shows
partitions written under other settings as stale. The run's version is ``run_version`` (its
MLflow record); each materialization records the one it was extracted from. Everything else is
missing, failed or stale, and ``extract`` re-extracts it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from mlruns_assets.runtime.settings import Kind
from mlruns_assets.warehouse.catalog import tables_for_kind

# Bump when the extraction writes different rows for the same run and settings (new columns are
# caught by the table declarations' digest already).
EXTRACTION_VERSION = "3"


@dataclass(frozen=True)
class SettingsFingerprint:
    """The settings that decide a partition's rows."""

    kind: Kind
    subject_map: str  # a digest of the map's content, or "none"
    extraction: str  # EXTRACTION_VERSION and a digest of the kind's table declarations

    @property
    def code_version(self) -> str:
        """Shown as the assets' code version in the UI; changes whenever the rows would."""
        return f"{self.kind.value}.x{self.extraction}.map-{self.subject_map}"

    def metadata(self) -> dict[str, str]:
        return {
            "settings/kind": self.kind.value,
            "settings/subject_map": self.subject_map,
            "settings/extraction": self.extraction,
        }

    def changes_since(self, recorded: Mapping[str, str]) -> list[str]:
        """What differs from settings recorded as ``metadata()`` (empty when none differs)."""
        labels = {
            "settings/kind": "kind changed",
            "settings/subject_map": "subject map changed",
            "settings/extraction": "extraction code or table schema changed",
        }
        mine = self.metadata()
        return [label for key, label in labels.items() if recorded.get(key) != mine[key]]


def _digest(text: str, length: int = 10) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def settings_fingerprint(kind: Kind, subject_map: Mapping[str, str] | None) -> SettingsFingerprint:
    declarations = "\n".join(f"{t.name}:{t.schema}" for t in tables_for_kind(kind))
    mapping = (
        "none"
        if subject_map is None
        else _digest("\n".join(f"{k}\t{v}" for k, v in sorted(subject_map.items())))
    )
    return SettingsFingerprint(kind, mapping, f"{EXTRACTION_VERSION}-{_digest(declarations, 6)}")


def data_version(code_version: str, source_version: str) -> str:
    """The data version of a partition's rows: they follow from the settings and the run."""
    return _digest(f"{code_version}|{source_version}", 16)


# Reasons that mean the partition's rows are not in this database.
ROWS_GONE = (
    "recorded in another database (or one since deleted)",
    "its rows are not in the database",
    "the database does not exist yet",
)
RUN_CHANGED = "the run changed in MLflow"


class State(StrEnum):
    DONE = "done"
    MISSING = "missing"
    FAILED = "failed"
    STALE = "stale"


@dataclass(frozen=True)
class Recorded:
    """What the latest materialization of a partition recorded."""

    database_id: str | None
    source_version: str | None
    settings: Mapping[str, str]


@dataclass(frozen=True)
class PartitionState:
    key: str
    state: State
    reason: str = ""


def classify(
    key: str,
    recorded: Recorded | None,
    *,
    failed: bool,
    rows_present: bool,
    database_id: str,
    fingerprint: SettingsFingerprint,
    source_version: str | None,
    full_refresh: bool = False,
) -> PartitionState:
    """Whether a partition's status still vouches for its rows, and if not, why.

    ``recorded`` is its latest materialization (None: never materialized), ``failed`` whether a
    later attempt failed, ``rows_present`` whether its run has rows in the database,
    ``source_version`` the run's current ``run_version`` (None: not known).
    """
    if recorded is None:
        if failed:
            return PartitionState(key, State.FAILED, "the last extraction failed")
        return PartitionState(key, State.MISSING, "never extracted")
    if not database_id:
        return PartitionState(key, State.MISSING, ROWS_GONE[2])
    if recorded.database_id != database_id:
        return PartitionState(key, State.MISSING, ROWS_GONE[0])
    if not rows_present:
        return PartitionState(key, State.MISSING, ROWS_GONE[1])
    if failed:
        return PartitionState(key, State.FAILED, "the last extraction failed")
    changes = fingerprint.changes_since(recorded.settings)
    if changes:
        return PartitionState(key, State.STALE, ", ".join(changes))
    if source_version is not None and recorded.source_version != source_version:
        return PartitionState(key, State.STALE, RUN_CHANGED)
    if full_refresh:
        return PartitionState(key, State.STALE, "full refresh")
    return PartitionState(key, State.DONE)
