"""The discovery sensor: new MLflow runs become partitions; runs gone from MLflow are handed to
the removal job. The sensor only requests: it writes nothing itself."""

import hashlib
import json
from typing import Any

import dagster as dg

from mlruns_assets.defs.partitions import partitions_def_name, range_tags, run_partitions
from mlruns_assets.defs.removal import removal_job_name, removal_run_config
from mlruns_assets.defs.resources import MlflowTrackingResource
from mlruns_assets.runtime.settings import Settings
from mlruns_assets.source.discovery import plan_discovery
from mlruns_assets.source.tracking import ExperimentRef


def build_discovery_sensor(
    experiment: ExperimentRef,
    job: Any,  # what define_asset_job returns; its type is not exported by dagster
    removal_job: dg.JobDefinition,
    *,
    request_runs: bool = True,
    partitions_per_run: int = Settings.default("partitions_per_run"),
    batch_size: int = 1000,
    minimum_interval_seconds: int = 60,
) -> dg.SensorDefinition:
    """A sensor that adds the experiment's new finished runs as partitions, requests their
    extraction, and requests the removal of runs deleted in MLflow (``defs.removal``)."""
    partitions = run_partitions(experiment)

    @dg.sensor(
        name=f"{experiment.slug}_discovery_sensor",
        jobs=[job, removal_job],
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Adds finished runs of MLflow experiment '{experiment.name}' as partitions in "
            "batches and requests their extraction; requests the removal of the partitions "
            "and rows of runs deleted in MLflow. Synthetic and still-running runs never become "
            "partitions."
        ),
    )
    def discovery_sensor(
        context: dg.SensorEvaluationContext,
        mlflow_tracking: MlflowTrackingResource,
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
        requests = []  # bounded: one request per chunk of new partitions, one removal
        if plan.to_remove:
            digest = hashlib.sha256(",".join(plan.to_remove).encode()).hexdigest()[:16]
            requests.append(
                dg.RunRequest(
                    job_name=removal_job_name(experiment),
                    run_key=f"remove:{digest}",
                    run_config=removal_run_config(experiment, plan.to_remove),
                )
            )
        if request_runs:
            for start in range(0, len(plan.to_add), partitions_per_run):
                chunk = plan.to_add[start : start + partitions_per_run]
                requests.append(
                    dg.RunRequest(
                        job_name=job.name,
                        run_key=f"{chunk[0]}..{chunk[-1]}",
                        tags=range_tags(chunk),
                    )
                )
        partition_requests: list[dg.AddDynamicPartitionsRequest] = []
        if plan.to_add:
            partition_requests.append(partitions.build_add_request(plan.to_add))
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=partition_requests,
            cursor=new_cursor,
        )

    return discovery_sensor
