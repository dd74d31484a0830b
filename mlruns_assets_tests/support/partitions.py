"""The runs behind an experiment's partitions: keys are ``<run name>@<run id>``."""

from __future__ import annotations

import dagster as dg

from mlruns_assets.source.partition_keys import run_id_of


def partition_runs(instance: dg.DagsterInstance, partitions_def_name: str) -> list[str]:
    """The run ids of the partitions, in partition order."""
    return [run_id_of(key) for key in instance.get_dynamic_partitions(partitions_def_name)]


def key_of(instance: dg.DagsterInstance, partitions_def_name: str, run_id: str) -> str:
    """The partition key of one run."""
    (key,) = [
        k for k in instance.get_dynamic_partitions(partitions_def_name) if run_id_of(k) == run_id
    ]
    return key
