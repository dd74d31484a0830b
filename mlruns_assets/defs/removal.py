"""Removing runs that left MLflow: a small job per experiment, so that the deletion happens in a
run (it may wait for the database lock; a sensor tick may not) and leaves events in the UI.

Launched by the discovery sensor and by ``extract``; it deletes the runs' rows from every table
of the experiment in one transaction, then their partitions, and records an observation per
asset naming the removed runs.
"""

from typing import Any

import dagster as dg

from mlruns_assets.defs.partitions import partitions_def_name
from mlruns_assets.runtime.settings import Kind
from mlruns_assets.source.partition_keys import run_id_of
from mlruns_assets.source.tracking import ExperimentRef
from mlruns_assets.warehouse.catalog import assets_for_kind, tables_for_kind
from mlruns_assets.warehouse.duckdb_writer import DuckDBWarehouse


class RemovedRuns(dg.Config):
    """The partitions (keys: ``<run name>@<run id>``, or the bare run id) of runs gone from
    MLflow."""

    partition_keys: list[str]


def removal_job_name(experiment: ExperimentRef) -> str:
    return f"{experiment.slug}_removal_job"


def removal_op_name(experiment: ExperimentRef) -> str:
    return f"{experiment.slug}_remove_runs"


def removal_run_config(experiment: ExperimentRef, keys: list[str]) -> dict[str, Any]:
    return {"ops": {removal_op_name(experiment): {"config": {"partition_keys": keys}}}}


def build_removal_job(experiment: ExperimentRef, kind: Kind) -> dg.JobDefinition:
    """The job that removes the given runs' rows and partitions from one experiment."""
    slug = experiment.slug

    @dg.op(
        name=removal_op_name(experiment),
        description=f"Deletes the rows and partitions of runs gone from MLflow experiment "
        f"'{experiment.name}'.",
    )
    def remove_runs(
        context: dg.OpExecutionContext, config: RemovedRuns, warehouse: DuckDBWarehouse
    ) -> None:
        keys = sorted(config.partition_keys)
        ids = [run_id_of(key) for key in keys]
        warehouse.remove_runs(slug, tables_for_kind(kind), ids)
        name = partitions_def_name(experiment)
        for key in keys:
            context.instance.delete_dynamic_partition(name, key)
        for asset in assets_for_kind(kind):
            context.log_event(
                dg.AssetObservation(
                    asset_key=[slug, asset.name],
                    metadata={"removed_runs": dg.MetadataValue.json(ids)},
                )
            )
        context.log.info(f"removed {len(ids)} run(s) from {slug}: {', '.join(ids)}")

    @dg.job(name=removal_job_name(experiment), executor_def=dg.in_process_executor)
    def removal_job() -> None:
        remove_runs()

    return removal_job
