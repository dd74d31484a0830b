"""The stall sensor: fails extraction runs whose work loop has stopped reporting.

Dagster emits no heartbeat of its own. The extraction step logs a ``[progress]`` line at every
partition and at least every ``heartbeat_seconds`` between the reads inside one, and inside a
read as its bytes arrive, from the work itself, so a hung loop (a blocked read, swapping, a
deadlock) goes quiet. A STARTED run with no event for longer than the stall timeout is therefore
hung: the sensor records the run as FAILED, with a message naming the partitions it had not
committed, how many it had, and its last progress line, then interrupts its worker process as a
cancel would and kills it if the interrupt did not stop it (a frozen process, or one blocked in
the kernel, cannot act on it). FAILED, not CANCELED: failed partitions show as failed, so the
UI's "backfill failed partitions" picks them up, and ``run_retries`` (dagster.yaml) retries the
run once.

Every run that executes an extraction step is watched, however it was launched: the extraction
jobs (``extract``, the discovery sensor) and Dagster's implicit asset job (``__ASSET_JOB``: the
asset page's "Materialize" and partition backfills). A run is recognised by its job name or by
the steps its execution plan executes (``<slug>_extraction``), never by its job name alone.

The decisions are plain functions (``find_stalled_runs``, ``pending_partitions``,
``stall_message``); the Dagster side only gathers run records and acts on them.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import dagster as dg
import psutil

from mlruns_assets.defs.checkpoints import earlier_attempts, partitions_by_asset
from mlruns_assets.defs.partitions import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG
from mlruns_assets.runtime.progress import PROGRESS_PREFIX
from mlruns_assets.runtime.worker import (
    WORKER_TAG,
    WorkerProcess,
    live_process,
    parse_worker_tag,
)

SENSOR_NAME = "extraction_stall_sensor"
# How long an interrupted worker gets to stop before it is killed.
KILL_GRACE_SECONDS = 10.0
# How far back the last progress line is looked for among a run's newest events.
_PROGRESS_LOOKBACK = 200
_SHOWN_KEYS = 5


# --------------------------------------------------------------------------- plain decisions
@dataclass(frozen=True)
class ExtractionTarget:
    """What marks a run as extracting one experiment: its job's name, or its step's key (the
    extraction multi-asset's op, ``<slug>_extraction``, which job ``<slug>_extraction_job``
    runs: ``defs.assets``), and the experiment's partitions (``<slug>_runs``)."""

    job_name: str
    step_key: str
    partitions_def_name: str


def extraction_targets(partitions_by_job: Mapping[str, str]) -> list[ExtractionTarget]:
    """The targets of the extraction jobs: job name -> partitions definition name."""
    return [
        ExtractionTarget(job, job.removesuffix("_job"), partitions)
        for job, partitions in partitions_by_job.items()
    ]


def run_target(
    job_name: str, step_keys: Callable[[], Iterable[str]], targets: Sequence[ExtractionTarget]
) -> ExtractionTarget | None:
    """The target a run extracts: by its job's name, else by the steps it executes (asked
    for only then: ``step_keys`` reads the run's execution plan); None when it extracts
    nothing (an observation, a removal, the demo traces)."""
    for target in targets:
        if target.job_name == job_name:
            return target
    by_step = {t.step_key: t for t in targets}
    return next((by_step[k] for k in step_keys() if k in by_step), None)


@dataclass(frozen=True)
class WatchedRun:
    """A STARTED run and the time (Unix seconds) of its newest event."""

    run_id: str
    last_event_at: float


@dataclass(frozen=True)
class StalledRun:
    run_id: str
    idle_seconds: float


def find_stalled_runs(
    runs: Iterable[WatchedRun], now: float, timeout_seconds: float
) -> list[StalledRun]:
    """The runs silent for longer than ``timeout_seconds`` at ``now``, longest silence first."""
    stalled = [
        StalledRun(r.run_id, now - r.last_event_at)
        for r in runs
        if now - r.last_event_at > timeout_seconds
    ]
    return sorted(stalled, key=lambda s: -s.idle_seconds)


def run_partition_keys(tags: Mapping[str, str], ordered_keys: Sequence[str]) -> list[str]:
    """The partition keys a run covers, from its tags and the partitions in order."""
    if PARTITION_TAG in tags:
        return [tags[PARTITION_TAG]]
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if start is None or end is None or start not in ordered_keys or end not in ordered_keys:
        return []
    first, last = ordered_keys.index(start), ordered_keys.index(end)
    return list(ordered_keys[first : last + 1])


def pending_partitions(keys: Sequence[str], committed: Iterable[str]) -> list[str]:
    """The run's keys it has not committed yet, in order: the first is the one it hangs in."""
    done = set(committed)
    return [k for k in keys if k not in done]


def stall_message(
    idle_seconds: float,
    timeout_seconds: float,
    pending: Sequence[str],
    last_progress: str | None,
    *,
    committed: int | None = None,
    total: int | None = None,
    progress_age_seconds: float | None = None,
) -> str:
    """One line for the run's failure: how long it was silent, where, how many partitions it
    had committed (from its materializations: the counts inside a progress line date from that
    line, and "done" lines reach the run log rate-limited), and what it last said, and when."""
    if pending:
        where = f"stalled in partition {pending[0]}"
        rest = pending[1:_SHOWN_KEYS]
        more = len(pending) - 1 - len(rest)
        if rest:
            where += f" (not reached: {', '.join(rest)}" + (f" and {more} more)" if more else ")")
    else:
        where = "stalled"
    text = f"{where}: no event for {idle_seconds:.0f} s (stall timeout {timeout_seconds:g} s)"
    if committed is not None:
        of = f" of {total}" if total else ""
        text += f"; committed {committed}{of} partitions"
    when = f" ({progress_age_seconds:.0f} s earlier)" if progress_age_seconds is not None else ""
    return f"{text}; last progress{when}: {last_progress or 'none yet'}"


def run_workers(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[WorkerProcess]:
    """The run's worker processes: the one the step tagged (on a retry, first the parent's,
    copied with the run's tags: its creation time tells it from a later process that reuses the
    pid), and the run worker the default run launcher announces in its "Started process for run
    (pid: N)" engine event."""
    workers: list[WorkerProcess] = []  # bounded: at most a few per run
    tagged = parse_worker_tag(run.tags.get(WORKER_TAG))
    if tagged is not None:
        workers.append(tagged)
    events = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=20
    ).records
    for record in events:
        event = record.event_log_entry.dagster_event
        data = event.engine_event_data if event is not None else None
        pid = data.metadata.get("pid") if data is not None else None
        if pid is not None:
            workers.append(
                WorkerProcess(
                    socket.gethostname(),
                    int(str(pid.value)),
                    started_before=record.event_log_entry.timestamp,
                )
            )
    return workers


def wait_for_exit(procs: Sequence[psutil.Process], seconds: float) -> None:
    """Wait until every process has exited (or is a zombie), at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = []  # bounded: the given processes
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
        if not alive:
            return
        time.sleep(0.2)


def kill(proc: psutil.Process) -> bool:
    """SIGKILL the process; True when it was still alive."""
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        proc.send_signal(signal.SIGKILL)
    except psutil.Error:
        return False
    return True


# --------------------------------------------------------------------------- Dagster side
def last_event_time(instance: dg.DagsterInstance, record: dg.RunRecord) -> float:
    newest = instance.get_records_for_run(record.dagster_run.run_id, limit=1, ascending=False)
    if newest.records:
        return newest.records[0].event_log_entry.timestamp
    return record.start_time or record.create_timestamp.timestamp()


def last_progress_line(instance: dg.DagsterInstance, run_id: str) -> tuple[str, float] | None:
    """The run's newest progress line and its time (Unix seconds)."""
    newest = instance.get_records_for_run(run_id, limit=_PROGRESS_LOOKBACK, ascending=False)
    for record in newest.records:
        message = record.event_log_entry.user_message or ""
        if message.startswith(PROGRESS_PREFIX):
            return message, record.event_log_entry.timestamp
    return None


def committed_partitions(instance: dg.DagsterInstance, run: dg.DagsterRun) -> set[str]:
    """Partitions the run has materialized (each is recorded as its transaction commits); a run
    resumed from its failure also has those its earlier attempts committed (it keeps them)."""
    committed = _materialized_by(instance, run.run_id)
    if run.is_resume_retry:
        for attempt in earlier_attempts(instance, run):
            committed |= _materialized_by(instance, attempt)  # bounded: one run group's ranges
    return committed


def _materialized_by(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    """Partitions the run materialized in any asset (one being recorded counts already)."""
    return set().union(*partitions_by_asset(instance, run_id).values())


def started_runs(instance: dg.DagsterInstance, job_names: Iterable[str]) -> list[dg.RunRecord]:
    """The STARTED runs of the given jobs (``fail_orphaned_runs``: runs ``extract`` made)."""
    names = set(job_names)
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
    )
    return [r for r in records if r.dagster_run.job_name in names]


def run_step_keys(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    """The steps the run executes: its own subset, else its execution plan's (the plan of an
    asset job run holds only the selected assets' steps)."""
    if run.step_keys_to_execute:
        return list(run.step_keys_to_execute)
    if run.execution_plan_snapshot_id is None:
        return []
    try:
        plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    except Exception:  # a run without a readable plan must not blind the sensor to the others
        return []
    return list(plan.step_keys_to_execute) or [step.key for step in plan.steps]


def extraction_runs(
    instance: dg.DagsterInstance, targets: Sequence[ExtractionTarget]
) -> list[tuple[dg.RunRecord, ExtractionTarget]]:
    """Every STARTED run that executes an extraction step, with what it extracts, however it
    was launched (an extraction job, or ``__ASSET_JOB`` from the asset page or a backfill)."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
    )
    found: list[tuple[dg.RunRecord, ExtractionTarget]] = []  # bounded: the STARTED runs
    for record in records:
        run = record.dagster_run
        target = run_target(run.job_name, partial(run_step_keys, instance, run), targets)
        if target is not None:
            found.append((record, target))
    return found


def describe_stall(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    stalled: StalledRun,
    timeout_seconds: float,
    partitions_def_name: str | None,
    *,
    now: float | None = None,
) -> str:
    ordered = instance.get_dynamic_partitions(partitions_def_name) if partitions_def_name else []
    keys = run_partition_keys(run.tags, ordered)
    committed = committed_partitions(instance, run)
    pending = pending_partitions(keys, committed)
    progress = last_progress_line(instance, run.run_id)
    at = time.time() if now is None else now
    return stall_message(
        stalled.idle_seconds,
        timeout_seconds,
        pending,
        progress[0] if progress else None,
        committed=len(committed & set(keys)) if keys else len(committed),
        total=len(keys) or None,
        progress_age_seconds=at - progress[1] if progress else None,
    )


def fail_stalled_runs(
    instance: dg.DagsterInstance,
    partitions_by_job: Mapping[str, str],
    timeout_seconds: float,
    *,
    now: float | None = None,
    grace_seconds: float = KILL_GRACE_SECONDS,
    log: Callable[[str], object] = lambda _: None,
) -> list[str]:
    """Fail, interrupt and if need be kill every stalled STARTED run that extracts one of the
    experiments of ``partitions_by_job`` (extraction job name -> partitions definition name),
    whatever its job (``extraction_runs``). Returns one line per run acted on (or deliberately
    left alone).

    The run is recorded as FAILED first, then its worker is interrupted (SIGINT, as a cancel
    would): a worker that sees its run already failed only logs that, so the failure message
    stays the one naming the partitions and the run does not end CANCELED. Workers still alive
    after ``grace_seconds`` are killed. A run executed in process by another command
    (``extract``) is never interrupted from here: it is failed only once its process is gone.
    """
    targets = extraction_targets(partitions_by_job)
    records = {r.dagster_run.run_id: (r, t) for r, t in extraction_runs(instance, targets)}
    watched = [
        WatchedRun(run_id, last_event_time(instance, r)) for run_id, (r, _) in records.items()
    ]
    at = time.time() if now is None else now
    stalled = find_stalled_runs(watched, at, timeout_seconds)
    outcomes: list[str] = []  # bounded: one line per stalled run
    interrupted: list[tuple[dg.DagsterRun, str, list[psutil.Process]]] = []  # bounded: likewise
    for stall in stalled:
        record, target = records[stall.run_id]
        run = record.dagster_run
        message = describe_stall(
            instance, run, stall, timeout_seconds, target.partitions_def_name, now=at
        )
        live = (live_process(w) for w in run_workers(instance, run))
        procs = list({p.pid: p for p in live if p is not None}.values())  # tag and event agree
        if run.remote_job_origin is None and procs:
            outcomes.append(
                f"run {run.run_id} is silent ({message}) but left alone: it runs in process "
                f"{procs[0].pid} of another command"
            )
            continue
        if not procs and run.remote_job_origin is not None:
            # No worker visible from here: the run launcher's cancel is the only handle.
            try:
                instance.run_launcher.terminate(run.run_id)
            except Exception as exc:  # a gone code server must not stop the failure below
                log(f"run {run.run_id}: cancel request failed: {exc}")
        instance.report_run_failed(run, message)
        # The interrupt Dagster's own cancel would deliver, sent directly: the launcher's cancel
        # sets a multiprocessing Event under the code server's execution lock and waits for the
        # worker to acknowledge it, so a frozen worker would hold that lock, and with it every
        # later launch, for good.
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGINT)
        interrupted.append((run, message, procs))
    wait_for_exit([p for _, _, procs in interrupted for p in procs], grace_seconds)
    for run, message, procs in interrupted:
        killed = [p.pid for p in procs if kill(p)]
        if killed:
            what = f"killed worker pid(s) {', '.join(map(str, killed))} (ignored the interrupt)"
        elif procs:
            what = f"worker pid(s) {', '.join(str(p.pid) for p in procs)} stopped on the interrupt"
        else:
            what = "no live worker process"
        instance.report_engine_event(f"stall sensor: {what}", run)
        outcomes.append(f"failed run {run.run_id}: {message}; {what}")
        log(outcomes[-1])
    return outcomes


def fail_orphaned_runs(instance: dg.DagsterInstance, job_names: Iterable[str]) -> list[str]:
    """Fail STARTED runs of the given jobs whose tagged worker process on this host is gone
    (an ``extract`` killed with ``kill -9``, an out-of-memory kill). Such runs would otherwise
    stay "in progress" forever and hold places in the run queue."""
    outcomes: list[str] = []  # bounded: one line per orphaned run
    for record in started_runs(instance, job_names):
        run = record.dagster_run
        worker = parse_worker_tag(run.tags.get(WORKER_TAG))
        if worker is None or worker.host != socket.gethostname() or live_process(worker):
            continue
        message = (
            f"the process that ran this run (pid {worker.pid} on {worker.host}) is gone: "
            "killed or crashed before the run finished"
        )
        instance.report_run_failed(run, message)
        outcomes.append(f"failed run {run.run_id}: {message}")
    return outcomes


def build_stall_sensor(
    partitions_by_job: Mapping[str, str],
    *,
    timeout_seconds: float,
    minimum_interval_seconds: int,
    grace_seconds: float = KILL_GRACE_SECONDS,
) -> dg.SensorDefinition:
    """One sensor per code location, watching every STARTED run that executes one of its
    extraction steps, whatever its job (``fail_stalled_runs``)."""
    jobs = dict(partitions_by_job)

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Fails extraction runs that have logged nothing for {timeout_seconds:g} s (the "
            "step reports progress at least every heartbeat interval, so silence means hung): "
            "interrupts its worker process, kills it if the interrupt does not stop it, and "
            "records the run as FAILED with the partition it hung in and its last progress "
            "line, so that its partitions show as failed and can be backfilled."
        ),
    )
    def extraction_stall_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        outcomes = fail_stalled_runs(
            context.instance,
            jobs,
            timeout_seconds,
            grace_seconds=grace_seconds,
            log=context.log.warning,
        )
        return dg.SkipReason("; ".join(outcomes) if outcomes else "no stalled extraction run")

    return extraction_stall_sensor
