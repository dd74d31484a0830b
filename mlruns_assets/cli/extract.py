"""``mlruns-assets extract``: discover, add partitions and materialize every missing or failed
partition in this process, against the same persistent instance the web UI reads."""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import click
import dagster as dg

from mlruns_assets.cli.extract_plan import (
    QUIET_LOGGERS,
    ExperimentWork,
    ExtractSummary,
    plan_work,
)
from mlruns_assets.cli.figures_refresh import refresh_leaderboards
from mlruns_assets.cli.options import setting_option, settings_from, store_options
from mlruns_assets.cli.preflight import preflight
from mlruns_assets.cli.progress_bar import ProgressBar
from mlruns_assets.defs.checkpoints import materialized_in_run
from mlruns_assets.defs.leaderboard import leaderboard_job_name
from mlruns_assets.defs.partitions import (
    extraction_job_name,
    range_tags,
)
from mlruns_assets.defs.project import build_definitions
from mlruns_assets.defs.resources import build_warehouse
from mlruns_assets.defs.stall_sensor import fail_orphaned_runs
from mlruns_assets.pipeline.extraction_pool import shutdown_shared_pool, start_shared_pool
from mlruns_assets.runtime.instance import default_dagster_home, open_instance
from mlruns_assets.runtime.interrupts import (
    EXIT_INTERRUPTED,
    clear_stop_request,
    run_interruptibly,
    stop_requested,
)
from mlruns_assets.runtime.progress import PROGRESS_LOGGER
from mlruns_assets.runtime.settings import Kind, Settings
from mlruns_assets.runtime.worker import worker_tags
from mlruns_assets.source.discovery import with_kinds
from mlruns_assets.warehouse.catalog import assets_for_kind
from mlruns_assets.warehouse.duckdb_writer import experiment_schemas
from mlruns_assets.warehouse.identity import open_database_id


def _execute(
    work: list[ExperimentWork],
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    summary: ExtractSummary,
    bar: ProgressBar,
) -> None:
    """Materialize every range, one in-process Dagster run each; stop between ranges (and,
    inside the step, between partitions) once a stop is requested."""
    for item in work:
        job = defs.resolve_job_def(extraction_job_name(item.experiment))
        assets = [dg.AssetKey([item.experiment.slug, a.name]) for a in assets_for_kind(item.kind)]
        for keys in item.ranges:
            if stop_requested():
                return
            result = job.execute_in_process(
                instance=instance,
                # This process is the run's worker from the start (the step tags it again): a
                # kill at any moment leaves a run `fail_orphaned_runs` knows.
                tags={**range_tags(keys), **worker_tags()},
                run_config=QUIET_LOGGERS,
                raise_on_error=False,
            )
            done = materialized_in_run(instance, result.run_id, assets)
            for key in keys:
                if key in done:
                    summary.materialized.append(key)
                elif key in bar.failures:
                    summary.failed[key] = bar.failures[key]
                elif not stop_requested():
                    summary.failed[key] = (
                        f"run {key}: the run failed before this partition committed"
                    )


def run_extract(
    config: Settings,
    dagster_home: Path | None = None,
    *,
    write: Callable[[str], object] | None = None,
    full_refresh: bool = False,
    dry_run: bool = False,
) -> ExtractSummary:
    """Extract every missing, failed or stale partition of the configured experiments (every
    partition with ``full_refresh``); with ``dry_run`` only say which, and why."""
    started = time.monotonic()
    write = write or sys.stderr.write  # looked up now: the caller may have redirected stderr
    database = Path(config.database)
    home = dagster_home or default_dagster_home(database)
    store, experiments = preflight(config, home, dry_run=dry_run)
    config = with_kinds(config, store, experiments)  # configured, else from the runs' artifacts
    defs = build_definitions(config, experiments)
    summary = ExtractSummary()
    database_id = open_database_id(build_warehouse(config), create=not dry_run)
    with open_instance(home) as instance:
        if not dry_run:
            # Runs left STARTED by an earlier extract that was killed would show as in progress
            # forever and hold places in the UI's run queue.
            jobs = [extraction_job_name(e) for e in experiments]
            jobs += [leaderboard_job_name(e) for e in experiments]
            for line in fail_orphaned_runs(instance, jobs):
                write(line + "\n")
        work = plan_work(
            config,
            instance,
            store,
            experiments,
            defs,
            summary,
            database_id=database_id,
            full_refresh=full_refresh,
            dry_run=dry_run,
        )
        if not dry_run:
            total = sum(len(r) for item in work for r in item.ranges)
            pooled = sum(
                len(r) for item in work if item.kind != Kind.IMPUTATION for r in item.ranges
            )
            pool = start_shared_pool(store, config.workers, pooled)
            summary.workers = pool.workers if pool else 0
            tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
            bar = ProgressBar(total, write, tty=tty)
            PROGRESS_LOGGER.addHandler(bar)
            PROGRESS_LOGGER.setLevel(logging.INFO)
            try:
                summary.interrupted = run_interruptibly(
                    partial(_execute, work, defs, instance, summary, bar), write
                )
            finally:
                shutdown_shared_pool()  # the workers served every step of this command
                PROGRESS_LOGGER.removeHandler(bar)
                bar.finish()
                clear_stop_request()
            changed = summary.materialized or summary.failed or summary.removed
            warehouse = build_warehouse(config)
            if changed and not summary.interrupted and warehouse.exists():
                # The leaderboards rank what is there now: of every experiment with rows.
                with warehouse.get_connection(read_only=True) as conn:
                    present = set(experiment_schemas(conn))
                ranked = [e for e in experiments if e.slug in present]
                refresh_leaderboards(defs, instance, ranked)
    summary.seconds = time.monotonic() - started
    return summary


@click.command(
    "extract",
    epilog="Examples:\n\n"
    "  mlruns-assets extract --tracking-uri ./mlruns --db results/results.duckdb "
    "--subject-map private/subject_map.csv\n\n"
    "  mlruns-assets extract --tracking-uri sqlite:///mlflow.db --db results.duckdb "
    "--experiment Classification --kind Pupil=generic --dry-run\n\n"
    "Exit codes: 0 every partition extracted, 1 a partition failed, 2 bad arguments, "
    "130 interrupted (rerun to resume).",
)
@store_options
@setting_option("min_free_disk_gb", "--min-free-disk-gb", type=click.FloatRange(min=0))
@click.option("--full-refresh", is_flag=True, help="re-extract every partition, done or not")
@click.option(
    "--dry-run", is_flag=True, help="list what would be extracted and why; change nothing"
)
def extract_command(
    dagster_home: Path | None, full_refresh: bool, dry_run: bool, **options: Any
) -> int:
    """Discover the runs of every configured experiment, add them as partitions, and extract
    every partition that is missing, failed or stale (written to another database, under other
    settings, or from an older version of its MLflow run), each in its own transaction, against
    the same persistent Dagster instance the web UI reads. Ctrl-C finishes the partition in
    flight and stops; a second Ctrl-C stops at once."""
    settings = settings_from(options)
    summary = run_extract(settings, dagster_home, full_refresh=full_refresh, dry_run=dry_run)
    if dry_run:
        for line in _status_lines(summary):
            click.echo(line)
        return 0
    for line in summary.lines():
        click.echo(line)
    where = settings.warehouse_url if settings.warehouse else Path(settings.database).resolve()
    click.echo(f"database: {where}")
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return 1 if summary.failed else 0


def _status_lines(summary: ExtractSummary) -> list[str]:
    lines = [
        f"{len(summary.todo)} to extract, {summary.skipped} up to date, "
        f"{len(summary.excluded)} excluded, {len(summary.removed)} gone from MLflow"
    ]
    counts = Counter(summary.todo.values())
    lines += [f"  {n:6d}  {reason}" for reason, n in sorted(counts.items())]
    lines += [f"{key}  {reason}" for key, reason in summary.todo.items()]
    if summary.behind_names:
        lines.append(summary.rekey_hint())
    return lines


@click.command(
    "status",
    epilog="Example: mlruns-assets status --tracking-uri demo/store/mlflow.db --db "
    "demo/results.duckdb --subject-map demo/store/subject_map.csv\n\n"
    "Exit codes: 0 listed, 2 bad arguments.",
)
@store_options
@click.option(
    "--full-refresh", is_flag=True, help="as `extract --full-refresh` would: every partition"
)
def status_command(dagster_home: Path | None, full_refresh: bool, **options: Any) -> int:
    """List what `extract` would extract and why (missing, failed, or stale: which cause),
    without changing anything: the same as `extract --dry-run`."""
    settings = settings_from(options)
    summary = run_extract(settings, dagster_home, full_refresh=full_refresh, dry_run=True)
    for line in _status_lines(summary):
        click.echo(line)
    return 0
