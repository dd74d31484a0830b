"""``mlruns-assets demo`` and ``quickstart``: the built-in demo store, and the demo end to end."""

from __future__ import annotations

import time
from pathlib import Path

import click

from mlruns_assets.demo.store import DemoStore, tracking_uri_for, write_demo_store
from mlruns_assets.runtime.errors import UsageError

SUBJECT_MAP = "subject_map.csv"


def demo_folder(value: str) -> Path:
    """The folder a demo store goes to: a local path, never a URL."""
    if "://" in value or value.startswith(("http:", "https:", "sqlite:", "file:")):
        raise UsageError(
            f"demo writes a local tracking store; {value!r} is a URI: give a folder "
            "(its sqlite:/// URI is printed for extract)"
        )
    return Path(value).expanduser()


def holds_a_store(folder: Path) -> bool:
    return (folder / "mlflow.db").exists() or (folder / "0" / "meta.yaml").exists()


@click.command(
    "demo",
    epilog="Example: mlruns-assets demo demo/store --runs 20\n\n"
    "Exit codes: 0 written, 2 bad arguments.",
)
@click.argument("path")
@click.option(
    "--backend",
    type=click.Choice(["sqlite", "file"]),
    default="sqlite",
    show_default=True,
    help="sqlite: PATH/mlflow.db; file: a legacy mlruns folder at PATH",
)
@click.option(
    "--runs", type=click.IntRange(min=1), default=12, show_default=True, help="classification runs"
)
@click.option(
    "--bootstraps",
    type=click.IntRange(min=2),
    default=50,
    show_default=True,
    help="bootstrap iterations per run",
)
def demo_command(path: str, backend: str, runs: int, bootstraps: int) -> None:
    """Write a realistic demo MLflow tracking store in the folder PATH: a Classification
    experiment (seed-layout metrics pickles), an Imputation experiment (signal pickles) and a
    private subject map."""
    folder = demo_folder(path)
    if holds_a_store(folder):
        raise UsageError(f"{folder} already holds a tracking store; give a new folder")
    started = time.monotonic()
    store = write_demo_store(folder, backend=backend, runs=runs, bootstraps=bootstraps)  # type: ignore[arg-type]
    click.echo(f"demo store written in {time.monotonic() - started:.1f} s: {store.tracking_uri}")
    click.echo(f"subject map (private): {store.subject_map_path}")


@click.command(
    "quickstart",
    epilog="Example: mlruns-assets quickstart demo\n\n"
    "Exit codes: 0 every partition extracted, 1 a partition failed.",
)
@click.argument("path", default="demo")
@click.option(
    "--runs", type=click.IntRange(min=1), default=12, show_default=True, help="classification runs"
)
@click.pass_context
def quickstart_command(ctx: click.Context, path: str, runs: int) -> int:
    """Write the demo store under PATH/store (the first time; a rerun reuses it), extract it
    into PATH/results.duckdb with its subject map, rebuild the leaderboards and draw each run's
    curves, and print the command that opens the web UI on the same instance. Safe to rerun:
    the second time there is nothing left to extract."""
    from mlruns_assets.cli.extract import extract_command
    from mlruns_assets.cli.figures_refresh import refresh_figures
    from mlruns_assets.runtime.interrupts import EXIT_INTERRUPTED
    from mlruns_assets.runtime.settings import Settings

    root = demo_folder(path).resolve()
    folder = root / "store"
    if holds_a_store(folder) and (folder / SUBJECT_MAP).is_file():
        store = DemoStore(
            tracking_uri=tracking_uri_for(folder, "sqlite"), subject_map_path=folder / SUBJECT_MAP
        )
        click.echo(f"reusing the demo tracking store: {store.tracking_uri}")
    else:
        store = write_demo_store(folder, backend="sqlite", runs=runs)
        click.echo(f"demo tracking store: {store.tracking_uri}")
    db = root / "results.duckdb"
    args = ["--tracking-uri", store.tracking_uri, "--db", str(db)]
    args += ["--subject-map", str(store.subject_map_path)]
    code = extract_command.main(args=args, standalone_mode=False)
    if code == EXIT_INTERRUPTED:  # the user asked to stop: no more work
        return int(code)
    figures = refresh_figures(
        Settings(
            tracking_uri=store.tracking_uri,
            database=str(db),
            subject_map=str(store.subject_map_path),
        )
    )
    click.echo(
        f"figures: {figures.leaderboards} leaderboard(s) rebuilt, curves drawn for "
        f"{figures.curves} run(s)" + (f", {figures.failures} failed" if figures.failures else "")
    )
    click.echo(f"report to share: uv run mlruns-assets report --db {db} --out {root}/report.html")
    click.echo(
        "open the web UI on the same instance with:\n"
        f"  uv run mlruns-assets ui --tracking-uri {store.tracking_uri} --db {db} "
        f"--subject-map {store.subject_map_path}"
    )
    return int(code or 0)
