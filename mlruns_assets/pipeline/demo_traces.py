"""Demo traces: the raw and imputed traces of a few configured subjects, for figures.

They carry original subject codes, so they go to Parquet files in the private folder, one file
per imputation run, and never to the results database. Runs are read one at a time (one pickle
in memory), and only the requested subjects' rows are kept from each.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow.entities import Run

from mlruns_assets.runtime.errors import ExtractionError
from mlruns_assets.runtime.guardrails import MemoryGuard
from mlruns_assets.source.artifacts import load_imputation_artifact
from mlruns_assets.source.tracking import TrackingStore
from mlruns_assets.transform.arrays import dig
from mlruns_assets.transform.signals import (
    DF,
    RAW,
    SplitSignals,
    double_lists,
    imputation_methods,
    key,
    numeric_array,
    read_signals,
    signals_table,
)

TRACES_FOLDER = "demo_traces"
_STR, _DOUBLES = pa.string(), pa.list_(pa.float64())
TRACES_SCHEMA = pa.schema(
    [
        pa.field("run_id", _STR, nullable=False),
        pa.field("run_name", _STR),
        pa.field("imputation_method", _STR),
        pa.field("outlier_method", _STR),
        pa.field("split", _STR, nullable=False),
        pa.field("subject_code", _STR, nullable=False),  # original: private
        pa.field("anonymized_code", _STR),
        pa.field("time_vector", _DOUBLES, nullable=False),
        pa.field("raw_signal", _DOUBLES),  # NULL where the pickle has no raw traces
        pa.field("imputed_signal", _DOUBLES, nullable=False),
    ]
)


@dataclass
class TracesExport:
    """What an export wrote and what it could not find."""

    files: list[Path] = field(default_factory=list)  # bounded: one per imputation run
    rows: int = 0
    runs_by_subject: dict[str, int] = field(default_factory=dict)  # requested code -> runs
    notes: list[str] = field(default_factory=list)  # bounded: a few per run

    @property
    def missing(self) -> list[str]:
        """Requested subjects found in no run."""
        return sorted(code for code, n in self.runs_by_subject.items() if n == 0)


def originals_of(requested: Iterable[str], subject_map: Mapping[str, str] | None) -> dict[str, str]:
    """Original code -> the code as requested (original or anonymized)."""
    to_original = {anon: orig for orig, anon in (subject_map or {}).items()}
    return {to_original.get(code, code): code for code in requested}


def split_traces(
    data: Any, part: SplitSignals, rows: np.ndarray, where: str
) -> tuple[pa.Array, str | None]:
    """The raw traces of the selected rows, or NULLs and a note naming the missing key path."""
    path = key(*DF, part.split, *RAW)
    try:
        raw = numeric_array(dig(data, (*DF, part.split, *RAW), where), path, where)
    except ExtractionError as exc:
        return pa.nulls(rows.size, _DOUBLES), f"{exc}: raw traces are NULL"
    if raw.shape != part.signal.shape:
        note = f"{where}: {path} has shape {raw.shape}, not {part.signal.shape}: NULL"
        return pa.nulls(rows.size, _DOUBLES), note
    return double_lists(raw[rows]), None


def run_traces(
    data: Any,
    run: Run,
    where: str,
    wanted: Mapping[str, str],
    subject_map: Mapping[str, str] | None,
) -> tuple[pa.Table, list[str]]:
    """The requested subjects' rows of one loaded imputation pickle, and notes."""
    methods, run_id = imputation_methods(run), run.info.run_id
    tables, notes = [], []  # bounded: one per split
    for part in read_signals(data, where):
        rows = np.flatnonzero(np.isin(part.codes, list(wanted)))
        raw, note = split_traces(data, part, rows, where)
        notes += [note] if note and rows.size else []
        codes = part.codes[rows]
        table = signals_table(
            run_id, methods, part.split, codes, part.time[rows], part.signal[rows]
        ).rename_columns({"signal": "imputed_signal"})
        extra = {
            "run_name": pa.repeat(pa.scalar(run.info.run_name, _STR), rows.size),
            "anonymized_code": pa.array([(subject_map or {}).get(c) for c in codes], _STR),
            "raw_signal": raw,
        }
        for name, column in extra.items():
            table = table.append_column(name, column)
        tables.append(table.select(TRACES_SCHEMA.names).cast(TRACES_SCHEMA))
    return pa.concat_tables(tables), notes


def export_demo_traces(
    store: TrackingStore,
    runs: Iterable[Run],
    requested: Iterable[str],
    subject_map: Mapping[str, str] | None,
    folder: Path,
    memory: MemoryGuard,
) -> TracesExport:
    """Write one Parquet file per run holding requested subjects into ``folder`` (private:
    created with mode 0700), removing files of earlier exports that were not rewritten."""
    wanted = originals_of(requested, subject_map)
    export = TracesExport(runs_by_subject=dict.fromkeys(wanted.values(), 0))
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for run in runs:
        try:
            with store.artifacts(run) as artifacts:
                data, path = load_imputation_artifact(artifacts, memory)
            table, notes = run_traces(data, run, path, wanted, subject_map)
            del data
        except Exception as exc:  # one bad run must not hide the others' traces
            export.notes.append(f"run {run.info.run_name!r}: {' '.join(str(exc).split())}")
            continue
        export.notes += notes
        for original in set(table.column("subject_code").to_pylist()):
            export.runs_by_subject[wanted[original]] += 1
        if table.num_rows:
            target = folder / f"{run.info.run_id}.parquet"
            pq.write_table(table, target)
            target.chmod(0o600)
            export.files.append(target)
            export.rows += table.num_rows
    for stale in set(folder.glob("*.parquet")) - set(export.files):
        stale.unlink()
    return export


def public_label(code: str, subject_map: Mapping[str, str] | None) -> str:
    """How a requested code may appear in logs: anonymized when a map is configured."""
    if subject_map is None or code in subject_map.values():
        return code
    return subject_map.get(code, "a code the subject map does not know")
