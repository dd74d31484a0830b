"""Sensors: discover new MLflow runs as partitions (and drop deleted ones)."""

import json
from typing import Any

import dagster as dg

from mlruns_assets.discovery import plan_discovery
from mlruns_assets.extraction import tables_for_kind
from mlruns_assets.partitions import (
    MAX_PARTITIONS_PER_RUN,
    partitions_def_name,
    range_tags,
    run_partitions,
)
from mlruns_assets.resources import MlflowTrackingResource
from mlruns_assets.tracking import ExperimentRef
from mlruns_assets.warehouse import DuckDBWarehouse


def build_discovery_sensor(
    experiment: ExperimentRef,
    kind: str,
    job: Any,  # what define_asset_job returns; its type is not exported by dagster
    *,
    request_runs: bool = True,
    batch_size: int = 1000,
    minimum_interval_seconds: int = 60,
) -> dg.SensorDefinition:
    """A sensor that adds the experiment's new finished runs as partitions, requests their
    extraction, and removes the partitions and rows of runs deleted in MLflow."""
    partitions = run_partitions(experiment)
    specs = tables_for_kind(kind)

    @dg.sensor(
        name=f"{experiment.slug}_discovery_sensor",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Adds finished runs of MLflow experiment '{experiment.name}' as partitions in "
            "batches and requests their extraction; removes partitions (and rows) of runs "
            "deleted in MLflow. Synthetic and still-running runs never become partitions."
        ),
    )
    def discovery_sensor(
        context: dg.SensorEvaluationContext,
        mlflow_tracking: MlflowTrackingResource,
        warehouse: DuckDBWarehouse,
    ) -> dg.SensorResult | dg.SkipReason:
        cursor = json.loads(context.cursor) if context.cursor else {}
        admitted = list(mlflow_tracking.admitted_statuses)
        # The cursor skips runs that ended before it. Runs of a status admitted only now
        # (admit_failed_runs switched on) may have ended long before it: scan from the start.
        rescan = cursor.get("admitted", ["FINISHED"]) != admitted
        known = set(context.instance.get_dynamic_partitions(partitions_def_name(experiment)))
        plan = plan_discovery(
            mlflow_tracking.store(),
            experiment,
            known,
            admitted_statuses=mlflow_tracking.admitted_statuses,
            after_end_time=None if rescan else cursor.get("end_time"),
            batch_size=batch_size,
        )
        end_time = plan.cursor_end_time if plan.to_add else cursor.get("end_time")
        new_cursor = json.dumps({"end_time": end_time, "admitted": admitted})
        if not plan.to_add and not plan.to_remove:
            reason = f"no new or deleted runs in '{experiment.name}'"
            if rescan:  # record the admitted statuses, so the next tick need not rescan
                return dg.SensorResult(skip_reason=reason, cursor=new_cursor)
            return dg.SkipReason(reason)
        if plan.to_remove:
            warehouse.remove_runs(experiment.slug, specs, plan.to_remove)
        requests = []
        if request_runs:
            for start in range(0, len(plan.to_add), MAX_PARTITIONS_PER_RUN):
                chunk = plan.to_add[start : start + MAX_PARTITIONS_PER_RUN]
                requests.append(  # bounded: one request per chunk of new partitions
                    dg.RunRequest(run_key=f"{chunk[0]}..{chunk[-1]}", tags=range_tags(chunk))
                )
        partition_requests: list[
            dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest
        ] = []
        if plan.to_add:
            partition_requests.append(partitions.build_add_request(plan.to_add))
        if plan.to_remove:
            partition_requests.append(partitions.build_delete_request(plan.to_remove))
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=partition_requests,
            cursor=new_cursor,
        )

    return discovery_sensor
