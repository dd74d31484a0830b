"""One dynamic partition per MLflow run, one partitions definition per experiment.

Shared by the extraction asset, the discovery sensor and the headless command.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from mlruns_assets.source.tracking import ExperimentRef

# The Dagster concurrency pool of every extraction step: an instance that sets a limit for it
# (deploy/dagster.yaml: `concurrency.pools`) bounds how many extraction runs write at once,
# whichever machine runs them; with no limit set (the default instance) it changes nothing.
EXTRACTION_POOL = "extraction"
# Dagster's run tags for one partition, or for a range of them.
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def partitions_def_name(experiment: ExperimentRef) -> str:
    """The instance-global name of an experiment's partitions: ``<slug>_runs``."""
    return f"{experiment.slug}_runs"


def run_partitions(experiment: ExperimentRef) -> dg.DynamicPartitionsDefinition:
    return dg.DynamicPartitionsDefinition(name=partitions_def_name(experiment))


def contiguous_ranges(ordered_keys: Sequence[str], wanted: set[str], chunk: int) -> list[list[str]]:
    """Split the wanted keys into runs of consecutive keys (in partition order), at most ``chunk``
    long: a Dagster run covers a contiguous key range."""
    ranges: list[list[str]] = []
    current: list[str] = []
    for key in ordered_keys:
        if key in wanted and len(current) < chunk:
            current.append(key)
            continue
        if current:
            ranges.append(current)  # bounded: key lists only, no run data
        current = [key] if key in wanted else []
    if current:
        ranges.append(current)
    return ranges


def extraction_job_name(experiment: ExperimentRef) -> str:
    """The job the headless command and the sensors launch for one experiment."""
    return f"{experiment.slug}_extraction_job"


def range_tags(keys: list[str]) -> dict[str, str]:
    """Run tags that make a run materialize exactly ``keys`` (a contiguous range)."""
    if len(keys) == 1:
        return {PARTITION_TAG: keys[0]}
    return {RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[-1]}
