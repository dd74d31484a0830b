"""The headless path's share of the figures: after an extraction, rebuild each classification
experiment's leaderboard and render the curves of the runs extracted since they were last drawn,
as in-process Dagster runs on the persistent instance, so the UI shows them as the daemon would.

``refresh_leaderboards`` is cheap (one query and one small transaction per experiment, plus a
Dagster run's bookkeeping, ~0.3-0.5 s): ``extract`` can call it after its ranges.
``render_stale_curves`` costs ~0.2-0.4 s per run (four matplotlib figures): ``quickstart`` calls
it; otherwise the UI's daemon renders them in the background.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from mlruns_assets.cli.extract_plan import QUIET_LOGGERS
from mlruns_assets.defs.curves import CURVES_PER_RUN, curves_job_name, curves_key
from mlruns_assets.defs.leaderboard import leaderboard_job_name
from mlruns_assets.defs.partitions import (
    contiguous_ranges,
    partitions_def_name,
    range_tags,
)
from mlruns_assets.defs.project import build_definitions
from mlruns_assets.runtime.instance import default_dagster_home, open_instance
from mlruns_assets.runtime.settings import Settings
from mlruns_assets.runtime.worker import worker_tags
from mlruns_assets.source.discovery import with_kinds
from mlruns_assets.source.tracking import ExperimentRef, TrackingStore
from mlruns_assets.warehouse.catalog import STRATOS


@dataclass
class FiguresRefreshed:
    """What a refresh did: leaderboards rebuilt, runs whose curves were drawn, failures."""

    leaderboards: int = 0
    curves: int = 0
    failures: int = 0


def _with_figures(defs: dg.Definitions, experiments: list[ExperimentRef]) -> list[ExperimentRef]:
    """The experiments that have a leaderboard (the classification ones)."""
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    return [e for e in experiments if leaderboard_job_name(e) in jobs]


def refresh_leaderboards(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    experiments: list[ExperimentRef],
    done: FiguresRefreshed | None = None,
) -> FiguresRefreshed:
    """Rebuild the leaderboard (table and UI) of each classification experiment given."""
    done = done or FiguresRefreshed()
    for experiment in _with_figures(defs, experiments):
        # Tagged with this process, like an extraction run: if it is killed mid-run, the
        # next `extract` fails the run instead of leaving it in progress.
        result = defs.resolve_job_def(leaderboard_job_name(experiment)).execute_in_process(
            instance=instance, run_config=QUIET_LOGGERS, raise_on_error=False, tags=worker_tags()
        )
        done.leaderboards += result.success
        done.failures += not result.success
    return done


def stale_curves(instance: dg.DagsterInstance, experiment: ExperimentRef) -> list[list[str]]:
    """Ranges of partitions whose STRATOS tables were materialized after their curves were
    drawn (or whose curves were never drawn), in partition order."""
    event = dg.DagsterEventType.ASSET_MATERIALIZATION
    slug = experiment.slug
    tables = instance.get_latest_storage_id_by_partition(dg.AssetKey([slug, STRATOS.name]), event)
    drawn = instance.get_latest_storage_id_by_partition(curves_key(experiment), event)
    wanted = {key for key, storage_id in tables.items() if storage_id > drawn.get(key, -1)}
    ordered = instance.get_dynamic_partitions(partitions_def_name(experiment))
    return contiguous_ranges(ordered, wanted, CURVES_PER_RUN)


def render_stale_curves(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    experiments: list[ExperimentRef],
    done: FiguresRefreshed | None = None,
    on_range: Callable[[int], None] | None = None,
) -> FiguresRefreshed:
    """Render the curves of every run extracted since its curves were last drawn."""
    done = done or FiguresRefreshed()
    for experiment in _with_figures(defs, experiments):
        job = defs.resolve_job_def(curves_job_name(experiment))
        for keys in stale_curves(instance, experiment):
            result = job.execute_in_process(
                instance=instance,
                tags=range_tags(keys),
                run_config=QUIET_LOGGERS,
                raise_on_error=False,
            )
            done.curves += len(keys) if result.success else 0
            done.failures += not result.success
            if on_range is not None:
                on_range(len(keys))
    return done


def refresh_figures(settings: Settings, dagster_home: Path | None = None) -> FiguresRefreshed:
    """Both refreshes for the configured experiments, on the instance ``extract`` used (the
    default beside the database unless given): what ``quickstart`` runs after extracting."""
    store = TrackingStore(settings.tracking_uri)
    experiments = store.experiments(settings.experiments or None)
    settings = with_kinds(settings, store, experiments)
    defs = build_definitions(settings, experiments)
    home = dagster_home or default_dagster_home(Path(settings.database))
    with open_instance(home) as instance:
        done = refresh_leaderboards(defs, instance, experiments)
        return render_stale_curves(defs, instance, experiments, done)
