"""Preprocessed signals of one imputation run, read from its loaded imputation pickle: plain
functions, no Dagster.

Per split of ``source_data.df`` (seed format):
- ``source_data.df[split].metadata.subject_code``: (subjects, T), the code in column 0;
- ``source_data.df[split].time.time``: (subjects, T);
- ``model_artifacts.imputation[split].imputation_dict.imputation.mean``: (subjects, T, 1).

Tables are yielded a chunk of subjects at a time and built over the pickle's own float64
buffers (a fixed-size list view cast to ``list<double>``): no Python object per value, and no
copy until DuckDB reads the chunk. Bad input raises an ``ExtractionError`` naming the key path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from mlruns_assets.runtime.errors import ExtractionError
from mlruns_assets.source.run_data import RunLike
from mlruns_assets.transform.arrays import dig
from mlruns_assets.transform.run_names import parse_imputation_run_name
from mlruns_assets.transform.subjects import anonymize
from mlruns_assets.warehouse.signals_schema import DOUBLES, PREPROCESSED_SIGNALS

DF = ("source_data", "df")
CODES = ("metadata", "subject_code")
TIME = ("time", "time")
RAW = ("data", "pupil_raw")
IMPUTED = ("model_artifacts", "imputation")
MEAN = ("imputation_dict", "imputation", "mean")
# Subjects per chunk. Chunks are views, so this mostly bounds the float64 copy made when a
# pickle stores another dtype; at the seed's scale a split is one or two chunks.
CHUNK_ROWS = 256


@dataclass(frozen=True)
class SplitSignals:
    """One split of an imputation pickle, validated: original codes (n,), time and signal (n, T)."""

    split: str
    codes: np.ndarray
    time: np.ndarray
    signal: np.ndarray


def key(*parts: str) -> str:
    """A key path as error messages spell it: ``source_data.df.train.time.time``."""
    return ".".join(parts)


def numeric_array(value: Any, path: str, where: str) -> np.ndarray:
    """``value`` as a numeric ndarray (no copy when it is one), or a one-line error."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ExtractionError(f"{where}: {path} is not an array ({exc})") from exc
    if arr.dtype.kind not in "fiu":
        raise ExtractionError(f"{where}: {path} is not numeric (dtype {arr.dtype})")
    return arr


def split_names(data: Any, where: str) -> list[str]:
    """The splits of ``source_data.df`` in the pickle's order."""
    df = dig(data, DF, where)
    if not isinstance(df, Mapping) or not df:
        raise ExtractionError(f"{where}: {key(*DF)} holds no splits")
    return [str(s) for s in df]


def read_split(data: Any, split: str, where: str) -> SplitSignals:
    """Codes, time vectors and imputed signals of one split, with their shapes checked."""
    codes_key, time_key = key(*DF, split, *CODES), key(*DF, split, *TIME)
    mean_key = key(*IMPUTED, split, *MEAN)
    codes = np.asarray(dig(data, (*DF, split, *CODES), where))
    time = numeric_array(dig(data, (*DF, split, *TIME), where), time_key, where)
    mean = numeric_array(dig(data, (*IMPUTED, split, *MEAN), where), mean_key, where)
    signal = mean.reshape(mean.shape[:2]) if mean.ndim == 3 and mean.shape[2] == 1 else mean
    if signal.ndim != 2 or signal.shape[1] == 0:
        raise ExtractionError(
            f"{where}: {mean_key} has shape {mean.shape}, expected (subjects, time points, 1)"
        )
    if time.shape != signal.shape:
        raise ExtractionError(
            f"{where}: {time_key} has shape {time.shape} but {mean_key} has {mean.shape}"
        )
    if codes.ndim == 2 and codes.shape[1] > 0:
        codes = codes[:, 0]  # every column repeats the subject's code
    if codes.ndim != 1:
        raise ExtractionError(
            f"{where}: {codes_key} has shape {codes.shape}, expected (subjects, T)"
        )
    if codes.shape[0] != signal.shape[0]:
        raise ExtractionError(
            f"{where}: {codes_key} has {codes.shape[0]} subjects but {mean_key} has "
            f"{signal.shape[0]} signals"
        )
    return SplitSignals(split, codes.astype(str), time, signal)


def imputation_methods(run: RunLike) -> tuple[str | None, str | None]:
    """(imputation, outlier method) from the run's params, else from its name; None when
    neither says."""
    by_name = parse_imputation_run_name(run.info.run_name)
    params = run.data.params
    return (
        params.get("imputation_source") or by_name[0],
        params.get("anomaly_source") or by_name[1],
    )


def double_lists(values: np.ndarray) -> pa.Array:
    """The rows of a 2-D array as ``list<double>``, over one flat float64 buffer."""
    flat = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), values.shape[1]).cast(DOUBLES)


def signals_table(
    run_id: str,
    methods: tuple[str | None, str | None],
    split: str,
    codes: np.ndarray,
    time: np.ndarray,
    signal: np.ndarray,
) -> pa.Table:
    """One chunk of ``preprocessed_signals`` rows: one per subject."""
    n = len(codes)

    def same(value: str | None) -> pa.Array:
        return pa.repeat(pa.scalar(value, pa.string()), n)

    columns = [
        same(run_id),
        same(methods[0]),
        same(methods[1]),
        same(split),
        pa.array(codes, pa.string()),
        double_lists(time),
        double_lists(signal),
    ]
    return pa.Table.from_arrays(columns, schema=PREPROCESSED_SIGNALS.schema)


def read_signals(data: Any, where: str) -> list[SplitSignals]:
    """Every split of a loaded imputation pickle, validated before any row is written."""
    return [read_split(data, split, where) for split in split_names(data, where)]


def signal_tables(
    splits: list[SplitSignals],
    run_id: str,
    methods: tuple[str | None, str | None],
    subject_map: dict[str, str] | None,
    where: str,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[pa.Table]:
    """Every ``preprocessed_signals`` row of the splits, a chunk of subjects at a time.

    Codes pass through the subject map when one is given; an unmapped code fails the run.
    """
    for part in splits:
        codes = anonymize(part.codes, subject_map, f"{where} ({key(*DF, part.split, *CODES)})")
        for start in range(0, len(codes), chunk_rows):
            rows = slice(start, start + chunk_rows)
            yield signals_table(
                run_id, methods, part.split, codes[rows], part.time[rows], part.signal[rows]
            )
