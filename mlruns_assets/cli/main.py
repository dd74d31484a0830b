"""The ``mlruns-assets`` command: turn MLflow experiments into a DuckDB results database.

Each subcommand lives in its own module and is imported only when it runs, so ``check`` or
``--help`` do not pay for importing Dagster and MLflow. Exit codes: 0 success, 1 a partition,
check or lint finding failed, 2 bad arguments or configuration, 130 interrupted.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from importlib.metadata import version
from typing import NoReturn

import click

from mlruns_assets.runtime.errors import UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# name -> (module, one-line help): the help is here so that listing the commands imports none.
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("demo", "write the demo store, extract it, say where everything is"),
    "extract": ("extract", "extract every missing, failed or stale partition"),
    "status": ("extract", "list what extract would do and why, changing nothing"),
    "ui": ("ui", "start the web UI on the persistent Dagster instance"),
    "check": ("check", "run every asset check against a results database"),
    "export": ("export", "copy a DuckLake warehouse into one DuckDB file, to share"),
    "rekey": ("rekey", "name each partition after its run's current MLflow name"),
    "report": ("report", "write one self-contained HTML report: leaderboards and curves"),
    "subject-map": ("subject_map", "build or extend the private re-anonymization map"),
    "demo": ("demo", "write a demo MLflow tracking store"),
    "tables": ("tables", "print the reference of every table (Markdown)"),
    "lint": ("lint", "report containers that grow without bound in loops"),
}


class LazyGroup(click.Group):
    """Subcommands imported on first use (click's documented lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(f"mlruns_assets.cli.{COMMANDS[cmd_name][0]}")
        command = getattr(module, cmd_name.replace("-", "_") + "_command")
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, (_, text) in COMMANDS.items()])


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Exit codes: 0 success, 1 a partition or check failed, 2 bad arguments, "
    "130 interrupted. `mlruns-assets COMMAND --help` shows each command's options and examples.",
)
@click.version_option(version("mlruns-assets"), "--version", prog_name="mlruns-assets")
def cli() -> None:
    """Turn MLflow experiments into one DuckDB results database (STRATOS performance tables),
    as a Dagster project: one partition per MLflow run, status as the checkpoint.

    Start with `mlruns-assets quickstart demo`.
    """


def fail(message: str) -> int:
    """Print ``mlruns-assets: error: <message>`` on one line; exit code 2."""
    click.echo(f"mlruns-assets: error: {' '.join(message.split())}", err=True)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (never raises for bad input)."""
    # Dagster flags some APIs this project uses as beta (partitioned observable sources, a
    # sensor with several jobs): nothing a user of the command can act on.
    warnings.filterwarnings("ignore", message=r".* is currently in beta")
    # One progress display: MLflow's own download bars and INFO lines would overwrite the bar.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="mlruns-assets",
            standalone_mode=False,
        )
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        return EXIT_USAGE
    except click.UsageError as exc:
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        return fail(exc.format_message() + where)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("mlruns-assets: interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        return fail(exc.format_message())
    except UsageError as exc:
        return fail(str(exc))
    return int(result or 0)


def run() -> NoReturn:
    """The ``mlruns-assets`` command: ``main()``, then exit without tearing the interpreter
    down. The teardown garbage-collects MLflow, Dagster and SQLAlchemy, ~1 s that changes
    nothing on disk; exit handlers (temporary store copies, worker processes) still run first,
    and the output is flushed."""
    code = main()
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
