"""Imputation signals (issue 5): plain reading functions, and streaming commits of their chunks."""

from __future__ import annotations

import copy
import weakref
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pyarrow as pa
import pytest
from mlflow.entities import Run, RunData, RunInfo

from mlruns_assets.runtime.errors import ExtractionError
from mlruns_assets.transform.run_names import parse_imputation_run_name
from mlruns_assets.transform.signals import (
    double_lists,
    imputation_methods,
    read_signals,
    signal_tables,
)
from mlruns_assets.warehouse.duckdb_writer import DuckDBWarehouse
from mlruns_assets.warehouse.signals_schema import PREPROCESSED_SIGNALS
from mlruns_assets_tests.support.signals import BAD_INPUT, TEST_CODES, WHERE
from mlruns_assets_tests.support.signals import imputation_pickle as _pickle


def _run(name: str | None, params: dict[str, str] | None = None) -> Run:
    info = RunInfo("r1", "1", "u", "FINISHED", 0, 1, "active", run_name=name)
    data = RunData(params=[mlflow.entities.Param(k, v) for k, v in (params or {}).items()])
    return Run(info, data)


# --------------------------------------------------------------------------- plain functions


def test_read_signals_and_tables_match_the_pickle_arrays() -> None:
    data = _pickle(n=10, length=30)
    splits = read_signals(data, WHERE)
    assert [s.split for s in splits] == ["train", "test"]
    assert [s.signal.shape for s in splits] == [(7, 30), (3, 30)]
    mapping = {f"PLR{1000 + i}": f"H{i:03d}" for i in range(10)}
    tables = list(signal_tables(splits, "r1", ("SAITS", None), mapping, WHERE, chunk_rows=4))
    assert [t.num_rows for t in tables] == [4, 3, 3]  # chunks never straddle a split
    table = pa.concat_tables(tables)
    assert table.schema == PREPROCESSED_SIGNALS.schema
    rows = table.to_pylist()
    assert {r["subject_code"] for r in rows} == set(mapping.values())
    assert {(r["imputation_method"], r["outlier_method"]) for r in rows} == {("SAITS", None)}
    df, imputed = data["source_data"]["df"], data["model_artifacts"]["imputation"]
    for i, row in enumerate(rows[:7]):
        assert (
            row["signal"]
            == imputed["train"]["imputation_dict"]["imputation"]["mean"][i, :, 0].tolist()
        )
        assert row["time_vector"] == df["train"]["time"]["time"][i].tolist()


def test_double_lists_wraps_the_float64_buffer_and_converts_other_dtypes() -> None:
    values = np.arange(12, dtype=np.float64).reshape(3, 4)
    lists = double_lists(values)
    assert lists.type == pa.list_(pa.float64())
    assert lists.values.buffers()[1].address == values.ctypes.data  # no copy
    assert lists.to_pylist()[2] == [8.0, 9.0, 10.0, 11.0]
    assert double_lists(values.astype(np.float32)).to_pylist() == lists.to_pylist()


def test_methods_from_params_else_from_the_run_name_never_guessed() -> None:
    assert parse_imputation_run_name("SAITS__LOF") == ("SAITS", "LOF")
    assert parse_imputation_run_name("SAITS") == (None, None)
    assert parse_imputation_run_name("a__b__c") == (None, None)
    assert imputation_methods(_run("SAITS__LOF")) == ("SAITS", "LOF")
    params = {"imputation_source": "CSDI", "anomaly_source": "pupil-gt"}
    assert imputation_methods(_run("x__y", params)) == ("CSDI", "pupil-gt")
    assert imputation_methods(_run("legacy-name")) == (None, None)


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_fails_with_one_line_naming_the_key_path(case: str) -> None:
    mutate, expected = BAD_INPUT[case]
    data = copy.deepcopy(_pickle())
    mutate(data)
    with pytest.raises(ExtractionError) as raised:
        list(signal_tables(read_signals(data, WHERE), "r1", (None, None), None, WHERE))
    message = str(raised.value)
    assert message.startswith(f"{WHERE}: ") and expected in message, message
    assert "\n" not in message


def test_unmapped_code_fails_naming_the_codes_key_path() -> None:
    splits = read_signals(_pickle(), WHERE)
    mapping = {f"PLR{1000 + i}": f"H{i:03d}" for i in range(9)}  # the last code is unmapped
    with pytest.raises(ExtractionError) as raised:
        list(signal_tables(splits, "r1", (None, None), mapping, WHERE))
    assert str(raised.value) == (
        f"1 subject code(s) in {WHERE} ({TEST_CODES}) are not in the subject map (PLR1009); "
        "add them with `mlruns-assets subject-map`"
    )


# --------------------------------------------------------------------------- streaming commits


def test_chunks_commit_in_one_transaction_each_released_before_the_next(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    splits = read_signals(_pickle(n=10, length=30), WHERE)

    def chunks(fail_after: int | None = None) -> Iterator[pa.Table]:
        previous: weakref.ref[pa.Table] | None = None
        for i, table in enumerate(signal_tables(splits, "r1", (None, None), None, WHERE, 3)):
            assert previous is None or previous() is None, "the last chunk is still referenced"
            if i == fail_after:
                raise ExtractionError("broken chunk")
            previous = weakref.ref(table)
            yield table
            del table

    assert warehouse.commit_partition("imp", "r1", {PREPROCESSED_SIGNALS: chunks()}) == {
        "preprocessed_signals": 10
    }
    with pytest.raises(ExtractionError, match="broken chunk"):
        warehouse.commit_partition("imp", "r1", {PREPROCESSED_SIGNALS: chunks(fail_after=2)})
    with warehouse.get_connection(read_only=True) as conn:  # the failed commit changed nothing
        found = conn.execute("SELECT count(*) FROM imp.preprocessed_signals").fetchone()
    assert found == (10,)
