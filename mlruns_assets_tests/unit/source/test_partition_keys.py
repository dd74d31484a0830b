"""Partition keys: ``<run name>@<run id>``, safe for Dagster and its UI, and read back to the id
whatever the name (or none, as keys were before names were added)."""

from __future__ import annotations

import dagster as dg
import pytest

from mlruns_assets.defs.rekey import KeyMove, moves_to_current_names
from mlruns_assets.source.partition_keys import MAX_NAME_CHARACTERS, partition_key, run_id_of

RUN_ID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("name", "key"),
    [
        (
            "CATBOOST_eval-auc__simple1.0__SAITS__LOF",
            f"CATBOOST_eval-auc__simple1.0__SAITS__LOF@{RUN_ID}",
        ),
        (None, RUN_ID),
        ("", RUN_ID),
        ("  ", RUN_ID),
        ("a/b c,d[e]", f"a-b-c-d-e@{RUN_ID}"),
        ("wait...what", f"wait.what@{RUN_ID}"),
        ("me@lab", f"me-lab@{RUN_ID}"),
        ("tab\there\nnewline", f"tab-here-newline@{RUN_ID}"),
        ("ünïcode Ωmega", f"ünïcode-Ωmega@{RUN_ID}"),
    ],
)
def test_key_carries_a_safe_name_and_the_run_id(name: str | None, key: str) -> None:
    assert partition_key(RUN_ID, name) == key
    assert run_id_of(key) == RUN_ID
    dg.DynamicPartitionsDefinition(name="runs").build_add_request([key])  # Dagster accepts it


def test_long_names_are_cut_and_bare_ids_read_as_themselves() -> None:
    key = partition_key(RUN_ID, "x" * 500)
    assert key == "x" * MAX_NAME_CHARACTERS + "@" + RUN_ID
    assert run_id_of(RUN_ID) == RUN_ID  # keys from before names were added


def test_moves_cover_bare_ids_and_renamed_runs_only() -> None:
    other = "f" * 32
    unlisted = "e" * 32
    keys = [RUN_ID, f"old-name@{other}", f"kept@{'d' * 32}", unlisted]
    names = {RUN_ID: "first", other: "new-name", "d" * 32: "kept"}
    assert moves_to_current_names(keys, names) == [
        KeyMove(RUN_ID, f"first@{RUN_ID}"),
        KeyMove(f"old-name@{other}", f"new-name@{other}"),
    ]
