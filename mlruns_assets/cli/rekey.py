"""``mlruns-assets rekey``: name every partition after its run's current MLflow name, keeping
the checkpoints (``defs.rekey``)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import click

from mlruns_assets.cli.options import (
    dagster_home_option,
    kind_option,
    setting_option,
    settings_from,
    with_warehouse,
)
from mlruns_assets.cli.preflight import preflight
from mlruns_assets.defs.leaderboard import leaderboard_job_name
from mlruns_assets.defs.partitions import extraction_job_name, partitions_def_name
from mlruns_assets.defs.rekey import move_partitions, moves_to_current_names, runs_in_progress
from mlruns_assets.defs.stall_sensor import fail_orphaned_runs
from mlruns_assets.runtime.errors import UsageError
from mlruns_assets.runtime.instance import default_dagster_home, open_instance
from mlruns_assets.source.discovery import with_kinds

PROGRESS_EVERY = 100  # partitions between progress lines


@click.command(
    "rekey",
    epilog="Example: mlruns-assets rekey --tracking-uri demo/store/mlflow.db "
    "--db demo/results.duckdb --dry-run\n\n"
    "Exit codes: 0 re-keyed (or nothing to do), 2 bad arguments or Dagster runs in progress.",
)
@setting_option("tracking_uri", "--tracking-uri", required=True, metavar="URI")
@setting_option("database", "--db", "database", metavar="PATH")
@with_warehouse
@setting_option("experiments", "--experiment", "experiments", multiple=True, metavar="NAME")
@kind_option
@dagster_home_option
@click.option("--dry-run", is_flag=True, help="list the keys that would change; change nothing")
def rekey_command(dagster_home: Path | None, dry_run: bool, **options: Any) -> int:
    """Give every partition the key `<run name>@<run id>` of its run's current MLflow name:
    partitions keyed before names were added (the bare run id), and runs renamed since they
    were discovered. Materialized partitions stay materialized (their checkpoints move with
    them; no run is extracted again); rows are untouched. Stop the UI's daemon or wait for
    queued and running Dagster runs to end first."""
    settings = settings_from(options)
    home = dagster_home or default_dagster_home(Path(settings.database))
    store, experiments = preflight(settings, home, dry_run=True)
    settings = with_kinds(settings, store, experiments)
    moved = 0
    with open_instance(home) as instance:
        if not dry_run:  # runs an `extract` killed left STARTED are not in progress
            jobs = [extraction_job_name(e) for e in experiments]
            fail_orphaned_runs(instance, jobs + [leaderboard_job_name(e) for e in experiments])
        busy = runs_in_progress(instance)
        if busy and not dry_run:
            raise UsageError(
                f"Dagster runs are queued or running on {home} ({', '.join(busy)}): re-key "
                "when none is, so that no run records events under a key being moved"
            )
        for experiment in experiments:
            keys = instance.get_dynamic_partitions(partitions_def_name(experiment))
            names = {
                r.info.run_id: r.info.run_name for r in store.iter_runs(experiment.experiment_id)
            }
            moves = moves_to_current_names(keys, names)
            if dry_run:
                for move in moves:
                    click.echo(f"{experiment.name}: {move.old} -> {move.new}")
            else:
                kind = settings.kind_of(experiment.name)
                report = partial(_report, experiment.name)
                move_partitions(instance, experiment, kind, moves, report)
            moved += len(moves)
    verb = "would re-key" if dry_run else "re-keyed"
    click.echo(f"{verb} {moved} partitions; the others already carry their runs' names")
    return 0


def _report(experiment: str, done: int, total: int) -> None:
    if done % PROGRESS_EVERY == 0 or done == total:
        click.echo(f"{experiment}: {done} of {total} partitions re-keyed", err=True)
