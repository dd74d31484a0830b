"""What classification experiments add to the definitions for the researcher's eye: per
experiment the leaderboard and curves assets and their jobs, and one automation sensor that keeps
them up to date after each extraction (on by default: the UI's daemon runs it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from mlruns_assets.defs.curves import build_curves_asset, build_curves_job
from mlruns_assets.defs.leaderboard import build_leaderboard_asset, build_leaderboard_job
from mlruns_assets.source.tracking import ExperimentRef

FIGURES_SENSOR = "figures_automation_sensor"


@dataclass
class FigureDefinitions:
    """The figures' share of the definitions."""

    assets: list[dg.AssetsDefinition] = field(default_factory=list)
    jobs: list[Any] = field(default_factory=list)  # what define_asset_job returns
    sensors: list[dg.SensorDefinition] = field(default_factory=list)


def build_figures(experiments: list[ExperimentRef], *, paused: bool = False) -> FigureDefinitions:
    """Leaderboard and curves of each classification experiment given, and their sensor
    (running by default, stopped when ``paused``)."""
    figures = FigureDefinitions()
    for experiment in experiments:
        leaderboard = build_leaderboard_asset(experiment)
        curves = build_curves_asset(experiment)
        figures.assets += [leaderboard, curves]  # bounded: two per experiment
        figures.jobs += [
            build_leaderboard_job(experiment, leaderboard),
            build_curves_job(experiment, curves),
        ]
    if figures.assets:
        figures.sensors.append(
            dg.AutomationConditionSensorDefinition(
                FIGURES_SENSOR,
                target=dg.AssetSelection.assets(*figures.assets),
                default_status=dg.DefaultSensorStatus.STOPPED
                if paused
                else dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=10,
                description="Rebuilds each leaderboard and renders each run's curves after "
                "the run's STRATOS tables are extracted (their automation conditions).",
            )
        )
    return figures
