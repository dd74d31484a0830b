"""A run's partition key: its MLflow run name as it was when the run was discovered, then ``@``
and its run id, e.g. ``CATBOOST_eval-auc__simple1.0__SAITS__LOF@3f2a...``.

The name makes a run findable from the UI's partitions page (its search matches any part of a
key); the id is what every table and lookup uses, so a key stays valid when the run is renamed
(``mlruns-assets rekey`` brings keys up to the current names, carrying their checkpoints).
Keys written before names were added are the bare run id, and read the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SEPARATOR = "@"
# Room for the longest names the pipeline writes (~60 characters) without filling the UI.
MAX_NAME_CHARACTERS = 100
# Dagster refuses "..." and control characters in keys, its partition selections split on
# "," and "[...]", and URLs carry keys: anything but letters (of any script), digits and
# "_.+=-" becomes "-".
_UNSAFE = re.compile(r"[^\w.+=-]+")


def key_name(run_name: str | None) -> str:
    """The part of a key made from a run name: safe characters only, at most
    ``MAX_NAME_CHARACTERS``; empty for an unnamed run."""
    name = _UNSAFE.sub("-", run_name or "")
    name = re.sub(r"\.{2,}", ".", name)[:MAX_NAME_CHARACTERS]
    return name.strip("-")


def partition_key(run_id: str, run_name: str | None) -> str:
    """The key of a run's partition (the bare run id when the run has no name)."""
    name = key_name(run_name)
    return f"{name}{SEPARATOR}{run_id}" if name else run_id


def run_id_of(key: str) -> str:
    """The MLflow run id a partition key stands for (MLflow run ids never contain ``@``)."""
    return key.rpartition(SEPARATOR)[2]


def keys_by_run_id(keys: Iterable[str]) -> dict[str, str]:
    """Run id -> its partition key, for keys of one experiment."""
    return {run_id_of(key): key for key in keys}
