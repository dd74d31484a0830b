"""The Dagster definitions of a project: per experiment its extraction asset, job, removal job
and discovery sensor; per classification experiment its leaderboard and curves; one stall
sensor; the resources built from the settings."""

from __future__ import annotations

import dagster as dg

from mlruns_assets.defs.assets import build_extraction_asset, extraction_job
from mlruns_assets.defs.checkpoints import build_runs_source
from mlruns_assets.defs.demo_traces import build_demo_traces_asset
from mlruns_assets.defs.figures import build_figures
from mlruns_assets.defs.partitions import partitions_def_name, run_partitions
from mlruns_assets.defs.removal import build_removal_job
from mlruns_assets.defs.resources import build_resources
from mlruns_assets.defs.sensors import build_discovery_sensor
from mlruns_assets.defs.stall_sensor import build_stall_sensor
from mlruns_assets.pipeline.checkpoint import settings_fingerprint
from mlruns_assets.runtime.settings import Kind, Settings
from mlruns_assets.source.discovery import with_kinds
from mlruns_assets.source.tracking import ExperimentRef, TrackingStore
from mlruns_assets.transform.subjects import load_subject_map


def build_definitions(
    settings: Settings,
    experiments: list[ExperimentRef] | None = None,
    *,
    from_environment: bool = False,
) -> dg.Definitions:
    """Assets, jobs and sensors for the given experiments (default: the configured ones, listed
    from the tracking store once), and a demo traces asset per imputation experiment when demo
    subjects are configured."""
    store = None
    if experiments is None:
        store = TrackingStore(settings.tracking_uri)
        experiments = store.experiments(settings.experiments or None)
    if any(e.name not in settings.kinds for e in experiments):
        store = store or TrackingStore(settings.tracking_uri)
        settings = with_kinds(settings, store, experiments)
    assets: list[dg.AssetsDefinition | dg.SourceAsset] = []  # bounded: a few per experiment
    jobs: list[object] = []  # bounded: two per experiment
    sensors: list[dg.SensorDefinition] = []  # bounded: one per experiment
    partitions_by_job: dict[str, str] = {}  # bounded: one per experiment
    subject_map = load_subject_map(settings.subject_map) if settings.subject_map else None
    for experiment in experiments:
        kind = settings.kind_of(experiment.name)
        fingerprint = settings_fingerprint(kind, subject_map)
        asset = build_extraction_asset(experiment, fingerprint, settings.partitions_per_run)
        assets.append(build_runs_source(experiment, run_partitions(experiment)))
        job = extraction_job(experiment, asset)
        removal = build_removal_job(experiment, kind)
        assets.append(asset)
        if kind == Kind.IMPUTATION and settings.demo_subjects:
            assets.append(build_demo_traces_asset(experiment))
        jobs += [job, removal]
        sensors.append(
            build_discovery_sensor(
                experiment, job, removal, partitions_per_run=settings.partitions_per_run
            )
        )
        partitions_by_job[job.name] = partitions_def_name(experiment)
    figures = build_figures(
        [e for e in experiments if settings.kind_of(e.name) == Kind.CLASSIFICATION],
        paused=settings.pause_figures,
    )
    assets += figures.assets
    jobs += figures.jobs
    sensors += figures.sensors
    if partitions_by_job:
        sensors.append(
            build_stall_sensor(
                partitions_by_job,
                timeout_seconds=settings.stall_timeout_seconds,
                minimum_interval_seconds=settings.stall_sensor_interval_seconds,
            )
        )
    return dg.Definitions(
        assets=assets,
        jobs=jobs,  # type: ignore[arg-type]
        sensors=sensors,
        resources=build_resources(settings, from_environment=from_environment),
        executor=dg.in_process_executor,
    )
