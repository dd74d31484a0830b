"""``mlruns-assets ui``: ``dagster dev`` on the persistent instance beside the database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from mlruns_assets.cli.options import setting_option, settings_from, store_options
from mlruns_assets.cli.preflight import preflight
from mlruns_assets.runtime.errors import UsageError
from mlruns_assets.runtime.instance import default_dagster_home, prepare_dagster_home


@click.command(
    "ui",
    epilog="Example: mlruns-assets ui --tracking-uri demo/store/mlflow.db --db "
    "demo/results.duckdb --subject-map demo/store/subject_map.csv\n\n"
    "Exit codes: the web server's own; 2 bad arguments.",
)
@store_options
@click.option("--host", default="127.0.0.1", show_default=True, help="address to serve on")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=3000,
    show_default=True,
    help="port to serve on",
)
@setting_option(
    "stall_timeout_seconds",
    "--stall-timeout-seconds",
    type=click.FloatRange(min=0, min_open=True),
)
@setting_option(
    "stall_sensor_interval_seconds", "--stall-sensor-interval-seconds", type=click.IntRange(min=1)
)
def ui_command(host: str, port: int, dagster_home: Path | None, **options: Any) -> int:
    """Start the Dagster web UI (and its daemon: sensors, backfills, the run queue) on the same
    persistent instance as `extract`: partitions, backfills, checks and sensors."""
    settings = settings_from(options)
    if settings.stall_timeout_seconds <= settings.heartbeat_seconds:
        raise UsageError(
            f"--stall-timeout-seconds ({settings.stall_timeout_seconds:g}) must exceed "
            f"--heartbeat-seconds ({settings.heartbeat_seconds:g}): a healthy step reports only "
            "that often"
        )
    home = dagster_home or default_dagster_home(Path(settings.database))
    # The checks extract makes, before serving: a bad store or experiment name is one line and
    # exit 2 here, not a stack trace in the web server's log.
    preflight(settings, home, dry_run=True)
    home = prepare_dagster_home(home)
    env = {
        **os.environ,
        **settings.to_env(),
        "DAGSTER_HOME": str(home),
        # `dagster dev` is what this command wraps; Dagster's advice to use `dg dev` instead
        # is for scaffolded projects, not for a code location run from an installed package.
        "PYTHONWARNINGS": "ignore:Function `dev_command` is superseded",
    }
    cmd = [sys.executable, "-m", "dagster", "dev", "-m", "mlruns_assets.definitions"]
    cmd += ["-h", host, "-p", str(port)]
    click.echo(f"DAGSTER_HOME={home}\n{' '.join(cmd)}", err=True)
    # From the instance's own folder: the dagster.yaml there is the one it uses (started from
    # a folder holding another one, Dagster warns that it is ignored).
    return subprocess.call(cmd, env=env, cwd=home)
