"""``mlruns-assets extract``: discover, add partitions and materialize every missing or failed
partition in this process, against the same persistent instance the web UI reads."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import dagster as dg

from mlruns_assets.cli.options import settings_from, store_options
from mlruns_assets.defs.partitions import (
    MAX_PARTITIONS_PER_RUN,
    contiguous_ranges,
    extraction_job_name,
    partitions_def_name,
    range_tags,
)
from mlruns_assets.defs.project import build_definitions
from mlruns_assets.defs.removal import removal_job_name, removal_run_config
from mlruns_assets.defs.stall_sensor import fail_orphaned_runs
from mlruns_assets.runtime.errors import UsageError
from mlruns_assets.runtime.guardrails import LowDiskSpace, check_free_disk
from mlruns_assets.runtime.instance import default_dagster_home, open_instance
from mlruns_assets.runtime.progress import PROGRESS_LOGGER, format_seconds
from mlruns_assets.runtime.settings import Kind, Settings
from mlruns_assets.runtime.worker import worker_tags
from mlruns_assets.source.discovery import plan_discovery
from mlruns_assets.source.tracking import ExperimentRef, TrackingStore
from mlruns_assets.warehouse.catalog import assets_for_kind

QUIET_LOGGERS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class ExtractSummary:
    """What one ``extract`` did, per partition outcome."""

    materialized: list[str] = field(default_factory=list)
    skipped: int = 0
    excluded: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [
            f"materialized {len(self.materialized)}, skipped {self.skipped} (already "
            f"materialized), excluded {len(self.excluded)}, failed {len(self.failed)}, "
            f"removed {len(self.removed)} in {self.seconds:.1f} s"
        ]
        reasons: dict[str, int] = {}  # bounded: one counter per exclusion reason
        for reason in self.excluded.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        if reasons:
            out.append("excluded: " + ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())))
        out += [f"FAILED {cause}" for cause in self.failed.values()]
        return out


def check_database_path(database: Path) -> None:
    """The database's folder must exist or be creatable, and be writable."""
    folder = database.resolve().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"database path {database} is not writable: {exc.strerror}") from exc
    if (
        database.is_dir()
        or not os.access(folder, os.W_OK)
        or (database.exists() and not os.access(database, os.W_OK))
    ):
        raise UsageError(f"database path {database} is not a writable file path")


class ProgressBar(logging.Handler):
    """Renders the extraction steps' progress records as one bar over the whole command."""

    def __init__(self, total: int, write: Callable[[str], object], tty: bool) -> None:
        super().__init__(logging.INFO)
        self.total, self.write, self.tty = total, write, tty
        self.done = 0
        self.failures: dict[str, str] = {}
        self.started = time.monotonic()
        self.last_line = 0.0
        self.bar = ""

    def emit(self, record: logging.LogRecord) -> None:
        info = getattr(record, "progress", None)
        if not isinstance(info, dict):
            return
        if "partition" not in info:  # a heartbeat inside a partition: what the step is doing
            if self.tty:  # on the bar's line, overwritten by the next update
                self.write(f"\r\033[K{self.bar} | {str(info.get('note', ''))[:60]}")
            else:  # a log file or pipe: the whole line, so a stall shows where it happened
                self.write(record.getMessage() + "\n")
            return
        self.done += 1
        if info.get("error"):
            self.failures[str(info["partition"])] = str(info["error"])
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate else float("inf")
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
            f"| {rate:.1f} runs/s | ETA {format_seconds(eta)} | failed {len(self.failures)}"
        )
        self.bar = line
        if self.tty:
            self.write("\r\033[K" + line + ("\n" if self.done >= self.total else ""))
        elif time.monotonic() - self.last_line >= 5 or self.done >= self.total:
            self.last_line = time.monotonic()
            self.write(line + "\n")


def _materialized(instance: dg.DagsterInstance, slug: str, kind: Kind) -> set[str]:
    """Partitions materialized in every asset of the experiment."""
    sets = [
        set(instance.get_materialized_partitions(dg.AssetKey([slug, asset.name])))
        for asset in assets_for_kind(kind)
    ]
    return set.intersection(*sets) if sets else set()


def preflight(config: Settings, home: Path) -> tuple[TrackingStore, list[ExperimentRef]]:
    """Checks before any work, each failing with a one-line ``UsageError``: the database path
    is writable, the disks of the database and the Dagster home have the minimum free space,
    and the tracking store exists and lists the experiments."""
    check_database_path(Path(config.database))
    try:
        check_free_disk([Path(config.database), home], int(config.min_free_disk_gb * 1e9))
    except LowDiskSpace as exc:
        raise UsageError(f"{exc} (--min-free-disk-gb)") from exc
    try:
        store = TrackingStore(config.tracking_uri)
        return store, store.experiments(config.experiments or None)
    except RuntimeError as exc:
        raise UsageError(str(exc)) from exc


def run_extract(
    config: Settings,
    dagster_home: Path | None = None,
    *,
    write: Callable[[str], object] | None = None,
    chunk: int = MAX_PARTITIONS_PER_RUN,
) -> ExtractSummary:
    """Extract every missing or failed partition of the configured experiments."""
    started = time.monotonic()
    write = write or sys.stderr.write  # looked up now: the caller may have redirected stderr
    database = Path(config.database)
    home = dagster_home or default_dagster_home(database)
    store, experiments = preflight(config, home)
    defs = build_definitions(config, experiments)
    summary = ExtractSummary()
    work: list[tuple[ExperimentRef, Kind, list[list[str]]]] = []  # bounded: one per experiment
    with open_instance(home) as instance:
        # Runs left STARTED by an earlier extract that was killed would show as in progress
        # forever and hold places in the UI's run queue.
        jobs = [extraction_job_name(e) for e in experiments]
        for line in fail_orphaned_runs(instance, jobs):
            write(line + "\n")
        for experiment in experiments:
            kind = config.kind_of(experiment.name)
            name = partitions_def_name(experiment)
            known = set(instance.get_dynamic_partitions(name))
            plan = plan_discovery(
                store,
                experiment,
                known,
                admitted_statuses=config.admitted_statuses,
                batch_size=10**9,
            )
            summary.excluded.update(plan.excluded)
            if plan.to_add:
                instance.add_dynamic_partitions(name, plan.to_add)
            if plan.to_remove:
                # The same job the discovery sensor requests: rows, then partitions, as events.
                removal = defs.resolve_job_def(removal_job_name(experiment)).execute_in_process(
                    instance=instance,
                    run_config={
                        **removal_run_config(experiment, plan.to_remove),
                        **QUIET_LOGGERS,
                    },
                    raise_on_error=False,
                )
                if removal.success:
                    summary.removed += plan.to_remove
                else:
                    for key in plan.to_remove:
                        summary.failed[key] = (
                            f"run {key}: gone from MLflow, but its rows could not be removed "
                            f"(Dagster run {removal.run_id})"
                        )
            ordered = instance.get_dynamic_partitions(name)
            done = _materialized(instance, experiment.slug, kind)
            todo = set(ordered) - done
            summary.skipped += len(set(ordered) & done)
            work.append((experiment, kind, contiguous_ranges(ordered, todo, chunk)))
        total = sum(len(r) for _, _, ranges in work for r in ranges)
        bar = ProgressBar(total, write, tty=hasattr(sys.stderr, "isatty") and sys.stderr.isatty())
        PROGRESS_LOGGER.addHandler(bar)
        PROGRESS_LOGGER.setLevel(logging.INFO)
        try:
            for experiment, kind, ranges in work:
                job = defs.resolve_job_def(extraction_job_name(experiment))
                for keys in ranges:
                    job.execute_in_process(
                        instance=instance,
                        # This process is the run's worker from the start (the step tags it
                        # again): a kill at any moment leaves a run `fail_orphaned_runs` knows.
                        tags={**range_tags(keys), **worker_tags()},
                        run_config=QUIET_LOGGERS,
                        raise_on_error=False,
                    )
                    done = _materialized(instance, experiment.slug, kind)
                    for key in keys:
                        if key in done:
                            summary.materialized.append(key)
                        else:
                            summary.failed[key] = bar.failures.get(
                                key, f"run {key}: the run failed before this partition committed"
                            )
        finally:
            PROGRESS_LOGGER.removeHandler(bar)
    summary.seconds = time.monotonic() - started
    return summary


@click.command(
    "extract",
    epilog="Examples:\n\n"
    "  mlruns-assets extract --tracking-uri ./mlruns --db results/results.duckdb "
    "--subject-map private/subject_map.csv\n\n"
    "  mlruns-assets extract --tracking-uri sqlite:///mlflow.db --db results.duckdb "
    "--experiment Classification --kind Pupil=generic\n\n"
    "Exit codes: 0 every partition extracted, 1 a partition failed, 2 bad arguments.",
)
@store_options
@click.option(
    "--min-free-disk-gb",
    type=click.FloatRange(min=0),
    default=Settings.default("min_free_disk_gb"),
    show_default=True,
    help=Settings.help("min_free_disk_gb"),
)
def extract_command(dagster_home: Path | None, **options: Any) -> int:
    """Discover the runs of every configured experiment, add them as partitions, and extract
    every partition that is missing or failed, each in its own transaction, against the same
    persistent Dagster instance the web UI reads."""
    settings = settings_from(options)
    summary = run_extract(settings, dagster_home)
    for line in summary.lines():
        click.echo(line)
    click.echo(f"database: {Path(settings.database).resolve()}")
    return 1 if summary.failed else 0
