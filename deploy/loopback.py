"""The scaled-out deployment on one machine's loopback, end to end (run by ``.ci/distributed``).

Starts, each on 127.0.0.1 and a free port: Postgres (a fresh cluster in a temporary folder, run
as the ``postgres`` user when started as root), Redis, a moto S3 server, an MLflow tracking server
whose artifacts go to S3 (``--artifacts-destination s3://...``), then a demo store logged through
that server, and the Dagster side exactly as deploy/ configures it: ``deploy/dagster.yaml``
(Postgres storage, queued run coordinator with the extraction pool, CeleryRunLauncher on Redis,
compute logs on S3), a ``dagster code-server`` that ``deploy/workspace.yaml`` points at,
``dagster-webserver``, ``dagster-daemon`` and Celery workers started with
``dagster-celery worker start -y deploy/celery/worker.yaml``.

Scenario (``e2e``): a backfill of every partition launched through GraphQL as the UI sends it;
one worker killed with SIGKILL (its whole process group: a machine lost) while its run has
committed some partitions and not all; the run is failed by the stall sensor (Celery reports a
lost task as STARTED for ever), retried by run_retries, and whatever is still missing is
backfilled again ("failed and missing partitions"). Optional faults: ``--restart-redis``
(right after the kill) and ``--restart-postgres`` (fast shutdown while a live run is writing,
down ``--postgres-down`` seconds, started again on the same port and data folder). The figures
sensor's leaderboard and curves runs go through the same launcher; once no run has been queued
or in progress for 30 s: every partition materialized, no run still holding a pool slot, the
tables (leaderboards included) equal a single-file ``mlruns-assets extract`` of the same store
(rows compared as multisets, ``extracted_at`` aside), and no run's rows written twice. Every
process started here is stopped (its process group) on the way out, also on SIGTERM or SIGINT;
one summary line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
LOCATION = "mlruns_assets"
TERMINAL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
LOG_BUCKET, ARTIFACT_BUCKET = "dagster-compute-logs", "mlflow-artifacts"
# ``--warehouse ducklake``: the catalog a database of the scenario's Postgres, the data on moto.
LAKE_DATABASE, LAKE_BUCKET = "lake", "ducklake-data"
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"

LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
  }
}"""
BACKFILL_STATUS = """
query BackfillStatus($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename ... on PartitionBackfill { status } ... on PythonError { message }
  }
}"""
SENSOR = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) { __typename ... on Sensor { id } }
}"""
CANCEL_BACKFILL = """
mutation Cancel($backfillId: String!) {
  cancelPartitionBackfill(backfillId: $backfillId) {
    __typename ... on PythonError { message }
  }
}"""
STOP_SENSOR = """
mutation StopSensor($id: String!) { stopSensor(id: $id) { __typename } }"""
LOCATIONS = """
query { workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
DAEMONS = """
query { instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"""


class LoopbackError(RuntimeError):
    """A component did not start, or the scenario's expectation failed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's binaries (Debian keeps them off PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise LoopbackError("no PostgreSQL server binaries (apt-get install postgresql-15)")
    return found[-1].parent


def wait_for(what: str, ready: Callable[[], bool], timeout: float, proc: Any = None) -> float:
    """Poll ``ready()`` until true; seconds waited. Fails early if ``proc`` exits."""
    started = time.monotonic()
    last: object = None
    while True:
        if proc is not None and proc.poll() is not None:
            raise LoopbackError(f"{what}: exited with {proc.returncode}")
        try:
            if ready():
                return time.monotonic() - started
        except (OSError, urllib.error.URLError) as exc:  # not up yet
            last = exc
        if time.monotonic() - started > timeout:
            raise LoopbackError(f"{what}: not ready after {timeout:.0f} s ({last})")
        time.sleep(0.5)


@dataclass
class Stack:
    """The processes of the deployment, each the leader of its own process group."""

    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    pg_data: Path | None = None
    started_at: float = field(default_factory=time.monotonic)

    def log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def start(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        self.log(name).parent.mkdir(parents=True, exist_ok=True)
        with self.log(name).open("ab") as sink:
            proc = subprocess.Popen(
                list(cmd),
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=dict(env or self.env),
                cwd=self.workdir,
                start_new_session=True,
                user=user,
            )
        self.procs[name] = proc
        return proc

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM, grace: float = 20.0) -> None:
        """Signal the process group of ``name``; SIGKILL what is left after ``grace``."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)

    def check_alive(self) -> None:
        """Fail when a process still meant to run has exited (one stopped on purpose is no
        longer in ``procs``): the last lines of its log say why."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = self.log(name).read_text(errors="replace")[-1500:]
                raise LoopbackError(f"{name} exited with {proc.returncode}: {tail}")

    def stop_dagster(self) -> None:
        """The workers, the daemon and the web server (nothing writes the results after)."""
        names = ("worker", "daemon", "webserver", "codeserver")
        for name in [n for n in self.procs if n.startswith(names)]:
            self.stop(name)

    def stop_all(self) -> None:
        # Clients first, servers last (Postgres gets a clean fast shutdown: SIGINT).
        self.stop_dagster()
        for name in [n for n in ("mlflow", "moto", "redis") if n in self.procs]:
            self.stop(name)
        if "postgres" in self.procs:
            self.stop("postgres", signal.SIGINT)
        for rest in list(self.procs):
            self.stop(rest)

    # -- services ----------------------------------------------------------------------------

    def start_postgres(self) -> None:
        pg = postgres_bin()
        data = self.workdir / "pg"
        data.mkdir()
        user = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            user = "postgres"
            owner = pwd.getpwnam(user)
            os.chown(self.workdir, owner.pw_uid, owner.pw_gid)
            os.chown(data, owner.pw_uid, owner.pw_gid)
            os.chmod(self.workdir, 0o755)
        subprocess.run(
            [str(pg / "initdb"), "-D", str(data / "data"), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--no-sync"],
            check=True, user=user, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.pg_data = data
        self.ports["postgres"] = free_port()
        self._run_postgres(user)
        with contextlib.closing(self.pg_connect("postgres")) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("CREATE DATABASE dagster")

    def ducklake_warehouse(self) -> str:
        """``--warehouse`` of a new DuckLake catalog: a database of this Postgres (stopped and
        restarted with it), its Parquet files in a bucket of this moto S3 (``start_s3`` first)."""
        import boto3

        with contextlib.closing(self.pg_connect("postgres")) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {LAKE_DATABASE}")
        endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket=LAKE_BUCKET
        )
        dsn = f"dbname={LAKE_DATABASE} host=127.0.0.1 port={self.ports['postgres']} user=postgres"
        return f"ducklake:postgres:{dsn}?data_path=s3://{LAKE_BUCKET}/lake/"

    def _run_postgres(self, user: str | None) -> None:
        assert self.pg_data is not None
        cmd = [str(postgres_bin() / "postgres"), "-D", str(self.pg_data / "data"),
               "-h", "127.0.0.1", "-p", str(self.ports["postgres"]), "-k", str(self.pg_data),
               "-c", "max_connections=200"]  # fmt: skip
        proc = self.start("postgres", cmd, user=user)
        wait_for("postgres", self.pg_ready, 60, proc)

    def pg_ready(self) -> bool:
        import psycopg2

        try:
            self.pg_connect("postgres").close()
        except psycopg2.OperationalError:
            return False
        return True

    def restart_postgres(self, down: float) -> float:
        """Stop Postgres (fast shutdown: every client connection is terminated, in-flight
        transactions roll back), keep it down ``down`` seconds, start it again on the same port
        and data folder; seconds it was unreachable."""
        started = time.monotonic()
        self.stop("postgres", signal.SIGINT)
        time.sleep(down)
        self._run_postgres("postgres" if os.geteuid() == 0 else None)
        return time.monotonic() - started

    def pg_connect(self, db: str) -> Any:
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1", port=self.ports["postgres"], user="postgres", dbname=db
        )

    def start_redis(self) -> None:
        redis = shutil.which("redis-server")
        if redis is None:
            raise LoopbackError("no redis-server (apt-get install redis-server)")
        self.ports["redis"] = free_port()
        self._run_redis()

    def _run_redis(self) -> None:
        cmd = [shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1",
               "--port", str(self.ports["redis"]), "--save", "", "--appendonly", "no",
               "--dir", str(self.workdir)]  # fmt: skip
        proc = self.start("redis", cmd)

        def ping() -> bool:
            with socket.create_connection(("127.0.0.1", self.ports["redis"]), timeout=2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")

        wait_for("redis", ping, 30, proc)

    def restart_redis(self) -> float:
        started = time.monotonic()
        self.stop("redis")
        self._run_redis()
        return time.monotonic() - started

    def start_s3(self) -> None:
        self.ports["s3"] = free_port()
        endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        s3_env = {
            "AWS_ACCESS_KEY_ID": "loopback",
            "AWS_SECRET_ACCESS_KEY": "loopback",
            "AWS_DEFAULT_REGION": "us-east-1",
            # boto3 (Dagster's S3 compute logs) and MLflow's S3 artifact repository.
            "AWS_ENDPOINT_URL_S3": endpoint,
            "MLFLOW_S3_ENDPOINT_URL": endpoint,
        }
        self.env.update(s3_env)
        os.environ.update(s3_env)  # this process is a client too
        cmd = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.ports["s3"])]
        proc = self.start("moto", cmd)
        wait_for("moto", lambda: _http_ok(f"{endpoint}/moto-api/"), 60, proc)
        import boto3

        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        for bucket in (LOG_BUCKET, ARTIFACT_BUCKET):
            s3.create_bucket(Bucket=bucket)

    def start_mlflow(self) -> str:
        self.ports["mlflow"] = free_port()
        uri = f"http://127.0.0.1:{self.ports['mlflow']}"
        cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1",
               "--port", str(self.ports["mlflow"]),
               "--backend-store-uri", f"sqlite:///{self.workdir}/mlflow.db",
               "--artifacts-destination", f"s3://{ARTIFACT_BUCKET}/", "--workers", "1"]  # fmt: skip
        proc = self.start("mlflow", cmd)
        wait_for("mlflow", lambda: _http_ok(f"{uri}/health"), 120, proc)
        return uri

    # -- Dagster -----------------------------------------------------------------------------

    def dagster_env(self, settings_env: Mapping[str, str]) -> dict[str, str]:
        home = self.workdir / "dagster_home"
        home.mkdir(exist_ok=True)
        shutil.copyfile(DEPLOY / "dagster.yaml", home / "dagster.yaml")
        redis = f"redis://127.0.0.1:{self.ports['redis']}"
        self.ports["code"] = free_port()
        return {
            **self.env,
            **settings_env,
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(self.ports["postgres"]),
            "DAGSTER_PG_USER": "postgres",
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": "dagster",
            "DAGSTER_CELERY_BROKER_URL": f"{redis}/0",
            "DAGSTER_CELERY_BACKEND_URL": f"{redis}/1",
            "DAGSTER_COMPUTE_LOGS_BUCKET": LOG_BUCKET,
            "DAGSTER_CODE_SERVER_HOST": "127.0.0.1",
            "DAGSTER_CODE_SERVER_PORT": str(self.ports["code"]),
        }

    def start_code_server(self, env: Mapping[str, str]) -> None:
        """The code location in its own long-lived gRPC server (deploy/workspace.yaml). With a
        ``python_module`` workspace the daemon spawns a new code server at every workspace
        reload (each minute), which builds an instance first: one spawned while Postgres is
        down fails, and until the next reload the daemon fails every backfill of the location
        ("existed at storage-time, but no longer does")."""
        import grpc

        port = str(self.ports["code"])
        cmd = [str(BIN / "dagster"), "code-server", "start", "-m", "mlruns_assets.definitions",
               "--location-name", LOCATION, "-h", "127.0.0.1", "-p", port]  # fmt: skip
        proc = self.start("codeserver", cmd, env=env)

        def serving() -> bool:
            channel = grpc.insecure_channel(f"127.0.0.1:{self.ports['code']}")
            try:
                grpc.channel_ready_future(channel).result(timeout=2)
            except grpc.FutureTimeoutError:
                return False
            finally:
                channel.close()
            return True

        wait_for("code server", serving, 300, proc)

    def workspace(self) -> Path:
        """deploy/workspace.yaml (the code server's address comes from the environment)."""
        path = self.workdir / "workspace.yaml"
        shutil.copyfile(DEPLOY / "workspace.yaml", path)
        return path

    def start_webserver(self, env: Mapping[str, str]) -> GraphQL:
        self.ports["webserver"] = free_port()
        cmd = [str(BIN / "dagster-webserver"), "-w", str(self.workspace()), "-h", "127.0.0.1",
               "-p", str(self.ports["webserver"])]  # fmt: skip
        proc = self.start("webserver", cmd, env=env)
        gql = GraphQL(f"http://127.0.0.1:{self.ports['webserver']}/graphql")

        def loaded() -> bool:
            entries = gql(LOCATIONS)["workspaceOrError"].get("locationEntries", [])
            for entry in entries:
                error = entry["locationOrLoadError"]
                if error and error["__typename"] == "PythonError":
                    raise LoopbackError(f"code location failed: {error['message']}")
            return any(e["loadStatus"] == "LOADED" for e in entries)

        wait_for("webserver", loaded, 300, proc)
        return gql

    def start_daemon(self, env: Mapping[str, str], gql: GraphQL) -> None:
        cmd = [str(BIN / "dagster-daemon"), "run", "-w", str(self.workspace())]
        proc = self.start("daemon", cmd, env=env)
        needed = {"BACKFILL", "QUEUED_RUN_COORDINATOR", "SENSOR", "MONITORING"}

        def healthy() -> bool:
            statuses = gql(DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
            return needed <= {s["daemonType"] for s in statuses if s["healthy"]}

        wait_for("daemon", healthy, 300, proc)

    def start_worker(self, name: str, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        """A Celery worker: one run at a time, a fresh process per run (CeleryRunLauncher runs
        the run in the pool process itself, in process)."""
        cmd = [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
               "-y", str(DEPLOY / "celery" / "worker.yaml"), "-n", name, "--",
               "--concurrency=1", "--max-tasks-per-child=1"]  # fmt: skip
        return self.start(name, cmd, env=env)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bool(response.status == 200)


# What the web server answers while Postgres is away or just back: it holds one connection per
# storage, and the first query on a connection the restart closed fails (SQLAlchemy then drops
# the pool's connections, the next query reconnects).
POSTGRES_GONE = ("OperationalError", "too many retries for DB connection")


@dataclass(frozen=True)
class GraphQL:
    url: str
    # Queries answered with a Postgres connection error and asked again (a user's refresh).
    retried: list[str] = field(default_factory=list)

    def __call__(
        self, query: str, variables: dict[str, Any] | None = None, patience: float = 60.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + patience
        while True:
            try:
                return self._ask(query, variables)
            except LoopbackError as exc:
                if not any(s in str(exc) for s in POSTGRES_GONE) or time.monotonic() > deadline:
                    raise
                self.retried.append(str(exc)[:200])
                time.sleep(1.0)

    def _ask(self, query: str, variables: dict[str, Any] | None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise LoopbackError(f"GraphQL HTTP {exc.code}: {exc.read()[:2000]!r}") from exc
        if payload.get("errors"):
            raise LoopbackError(f"GraphQL errors: {payload['errors']}")
        return dict(payload["data"])


@contextlib.contextmanager
def running_stack(workdir: Path) -> Iterator[Stack]:
    stack = Stack(workdir)
    stack.env = {k: v for k, v in os.environ.items() if not k.startswith("MLRUNS_ASSETS_")}
    # `dagster-celery worker start` runs `celery` from PATH: this environment's, however the
    # script was started (uv run puts it there, a bare .venv/bin/python does not).
    stack.env["PATH"] = os.pathsep.join([str(BIN), stack.env.get("PATH", os.defpath)])
    try:
        yield stack
    finally:
        stack.stop_all()


# -- the demo store, logged through the server ---------------------------------------------------


def write_store(
    uri: str, folder: Path, runs: int, imputation_runs: int, experiments: int = 1
) -> Path:
    """The demo store's experiments logged through ``uri`` (artifacts land in S3), with
    ``experiments`` classification experiments of ``runs`` runs each; the subject map's path."""
    import mlflow
    import numpy as np

    from mlruns_assets.demo.store import CLASSIFICATION, DemoWriter, SubjectPool

    rng = np.random.default_rng(0)
    pool = SubjectPool.draw(rng, 63, 40)
    folder.mkdir(parents=True, exist_ok=True)
    # backend "file": experiments get the server's default artifact location (mlflow-artifacts:).
    writer = DemoWriter(mlflow.MlflowClient(uri), folder, "file", uri, pool, rng, 50)
    for index in range(experiments):
        name = CLASSIFICATION if index == 0 else f"{CLASSIFICATION} {index + 1}"
        experiment_id = writer.experiment(name)
        for spec in writer.run_specs(runs):
            writer.classification_run(experiment_id, spec)
    writer.imputation_runs(imputation_runs, 40, 200)
    return writer.write_subject_map()


# -- the scenario --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """The scenario's figures; each note also goes to ``log`` (and stderr with --verbose)."""

    log: Path
    verbose: bool = False
    figures: dict[str, Any] = field(default_factory=dict)

    def note(self, **items: Any) -> None:
        self.figures.update(items)
        line = " ".join(f"{k}={v}" for k, v in items.items())
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as sink:
            sink.write(line + "\n")
        if self.verbose:
            print("  " + line, file=sys.stderr, flush=True)


def launch_backfill(gql: GraphQL, keys: Sequence[Any], partitions: Sequence[str]) -> str:
    launched = gql(
        LAUNCH_BACKFILL,
        {
            "backfillParams": {
                "tags": [{"key": "dagster/from_ui", "value": "true"}],
                "assetSelection": [{"path": key.path} for key in keys],
                "partitionNames": list(partitions),
                "fromFailure": False,
            }
        },
    )["launchPartitionBackfill"]
    if launched["__typename"] != "LaunchBackfillSuccess":
        raise LoopbackError(f"backfill launch failed: {launched}")
    return str(launched["backfillId"])


def wait_backfill(
    gql: GraphQL,
    backfill_id: str,
    timeout: float,
    stack: Stack,
    instance: Any,
    outcome: Outcome,
    lost_retry_grace: float = 60.0,
) -> str:
    """Wait until the backfill ends; its status.

    A backfill waits for the automatic retry of each of its failed runs tagged
    ``dagster/will_retry=true``. Dagster stores a run's failure event before it marks the run
    failed and tags it: when the daemon's event consumer reads the event in between, it skips
    the run for good, no retry is ever launched, and the backfill stays REQUESTED. Seen here on
    Postgres storage with a run failed by the stall sensor. Such a backfill (every run ended, a
    retry promised, none launched for ``lost_retry_grace`` seconds) is cancelled, as an operator
    would, and its partitions go to the backfill of failed and missing partitions."""
    import dagster as dg

    status = "REQUESTED"
    lost_since: float | None = None

    def done() -> bool:
        nonlocal status, lost_since
        stack.check_alive()
        result = gql(BACKFILL_STATUS, {"backfillId": backfill_id})["partitionBackfillOrError"]
        status = str(result.get("status", "?"))
        if status in TERMINAL:
            return True
        runs = [
            r.dagster_run
            for r in instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        ]
        ended = runs and all(r.is_finished for r in runs)
        lost = [
            r
            for r in runs
            if r.status == dg.DagsterRunStatus.FAILURE
            and r.tags.get("dagster/will_retry") == "true"
            and "dagster/auto_retry_run_id" not in r.tags
        ]
        if not (ended and lost):
            lost_since = None
        elif lost_since is None:
            lost_since = time.monotonic()
        elif time.monotonic() - lost_since > lost_retry_grace and status == "REQUESTED":
            outcome.note(lost_retry=",".join(r.run_id[:8] for r in lost))
            cancel = gql(CANCEL_BACKFILL, {"backfillId": backfill_id})["cancelPartitionBackfill"]
            if cancel["__typename"] == "PythonError":
                raise LoopbackError(f"could not cancel backfill {backfill_id}: {cancel}")
        return False

    wait_for(f"backfill {backfill_id}", done, timeout)
    return status


def run_e2e(args: argparse.Namespace) -> int:
    import dagster as dg

    from mlruns_assets.defs.partitions import partitions_def_name
    from mlruns_assets.runtime.settings import Settings
    from mlruns_assets.source.discovery import plan_discovery, with_kinds
    from mlruns_assets.source.tracking import TrackingStore
    from mlruns_assets.warehouse.catalog import assets_for_kind
    from mlruns_assets.warehouse.leaderboard import LEADERBOARD

    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="mlruns-assets-distributed-"))
    outcome = Outcome(workdir / "logs" / "scenario.log", args.verbose)
    try:
        if args.warehouse == "ducklake":
            ducklake_loadable()
        with running_stack(workdir) as stack:
            stack.start_postgres()
            stack.start_redis()
            stack.start_s3()
            uri = stack.start_mlflow()
            outcome.note(services_s=round(time.monotonic() - began, 1))
            with (
                stack.log("store").open("w") as sink,
                contextlib.redirect_stdout(sink),
            ):  # MLflow prints a link per run
                subject_map = write_store(
                    uri, workdir / "demo", args.runs, args.imputation_runs, args.experiments
                )
            outcome.note(store_s=round(time.monotonic() - began, 1))
            database = workdir / "results" / "results.duckdb"
            lake = stack.ducklake_warehouse() if args.warehouse == "ducklake" else None
            if lake is not None:
                outcome.note(warehouse=lake)
            settings = Settings(
                tracking_uri=uri,
                # With DuckLake: where the Dagster home and the private folder go.
                database=str(workdir / "results" / "lake" if lake else database),
                warehouse=lake,
                subject_map=str(subject_map),
                heartbeat_seconds=5.0,
                stall_timeout_seconds=args.stall_timeout,
                stall_sensor_interval_seconds=5,
                pause_figures=args.pause_figures,
            )
            store = TrackingStore(uri)
            experiments = store.experiments(None)
            settings = with_kinds(settings, store, experiments)
            env = stack.dagster_env(settings.to_env())
            # Per experiment: its asset keys and its partitions (one backfill each: a backfill's
            # partition names apply to every selected asset).
            targets: list[tuple[list[Any], list[str]]] = []
            old_home = os.environ.get("DAGSTER_HOME")
            os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_")})
            with dg.DagsterInstance.get() as instance:
                for experiment in experiments:
                    kind = settings.kind_of(experiment.name)
                    keys = [dg.AssetKey([experiment.slug, a.name]) for a in assets_for_kind(kind)]
                    plan = plan_discovery(store, experiment, set(), batch_size=10**9)
                    instance.add_dynamic_partitions(partitions_def_name(experiment), plan.to_add)
                    targets.append((keys, list(plan.to_add)))
            partitions = sum(len(p) for _, p in targets)

            stack.start_code_server(env)
            gql = stack.start_webserver(env)
            for experiment in experiments:  # backfills only: the sensors would launch runs too
                selector = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__",
                            "sensorName": f"{experiment.slug}_discovery_sensor"}  # fmt: skip
                sensor = gql(SENSOR, {"selector": selector})["sensorOrError"]
                gql(STOP_SENSOR, {"id": sensor["id"]})
            stack.start_daemon(env, gql)
            workers = [f"worker{i + 1}" for i in range(args.workers)]
            for name in workers:
                stack.start_worker(name, env)
            outcome.note(stack_s=round(time.monotonic() - began, 1), partitions=partitions)

            with dg.DagsterInstance.get() as instance:
                launched = time.monotonic()
                backfills = [launch_backfill(gql, k, p) for k, p in targets]
                kill_a_worker_mid_run(stack, instance, workers, args, outcome)
                if args.restart_redis:
                    # Broker and result backend gone for a moment while runs are in flight.
                    outcome.note(redis_restart_s=round(stack.restart_redis(), 1))
                if args.restart_postgres:
                    # The instance gone while a run is writing its events, by default longer
                    # than dagster-postgres's connection retries (~12 s): writes fail for real.
                    in_flight = wait_run_in_flight(stack, instance, args.timeout)
                    outcome.note(
                        postgres_restart_run=in_flight[:8],
                        postgres_down_s=round(stack.restart_postgres(args.postgres_down), 1),
                    )
                statuses = [
                    wait_backfill(gql, b, args.timeout, stack, instance, outcome) for b in backfills
                ]
                outcome.note(backfills=",".join(statuses))
                outcome.note(backfill_s=round(time.monotonic() - launched, 1))
                # "Backfill failed and missing partitions", as the UI offers it.
                refill = [(k, missing_partitions(instance, k, p)) for k, p in targets]
                refill = [(k, m) for k, m in refill if m]
                if refill:
                    second = [launch_backfill(gql, k, m) for k, m in refill]
                    statuses = [
                        wait_backfill(gql, b, args.timeout, stack, instance, outcome)
                        for b in second
                    ]
                    outcome.note(refill_backfills=",".join(statuses))
                outcome.note(refilled=sum(len(m) for _, m in refill))
                # The figures sensor rebuilds the leaderboards (compared below) and draws the
                # curves after the extractions: wait until it has nothing left to launch.
                outcome.note(quiet_after_s=round(wait_quiet(stack, instance, args.timeout), 1))
                # Throughput: from the first extraction run's start to the last one's end (the
                # backfill's own status lags behind its daemon's iterations; the figures runs
                # are not extraction).
                spans = [
                    (r.start_time, r.end_time)
                    for r in instance.get_run_records()
                    if r.start_time is not None
                    and r.end_time is not None
                    and "dagster/backfill" in r.dagster_run.tags
                ]
                if spans:
                    first, last = min(s for s, _ in spans), max(e for _, e in spans)
                    outcome.note(
                        runs_span_s=round(last - first, 1),
                        partitions_per_s=round(partitions / (last - first), 2),
                        run_seconds_sum=round(sum(e - s for s, e in spans), 1),
                    )
                missing = sum(len(missing_partitions(instance, k, p)) for k, p in targets)
                if missing:
                    raise LoopbackError(f"{missing} partitions never materialized")
                by_status: dict[str, int] = {}
                for record in instance.get_run_records():
                    value = record.dagster_run.status.value
                    by_status[value] = by_status.get(value, 0) + 1
                outcome.note(runs=json.dumps(by_status, separators=(",", ":")))
                slots = held_slots(instance)
                outcome.note(pool_slots_held=slots, graphql_retried=len(gql.retried))
                if slots:
                    raise LoopbackError(f"{slots} concurrency slots still held after the runs")
            if old_home is None:
                os.environ.pop("DAGSTER_HOME", None)
            stack.stop_dagster()

            if lake is not None:
                # The lake as of its latest snapshot, in one DuckDB file (compared below).
                database.parent.mkdir(parents=True, exist_ok=True)
                exported = subprocess.run(
                    [str(BIN / "mlruns-assets"), "export", "--warehouse", lake,
                     "--out", str(database)],
                    env=stack.env, capture_output=True, text=True,
                )  # fmt: skip
                if exported.returncode != 0:
                    output = (exported.stdout + exported.stderr)[-2000:]
                    raise LoopbackError(f"export of the DuckLake warehouse failed: {output}")
            single = workdir / "single" / "results.duckdb"
            extracted = subprocess.run(
                [str(BIN / "mlruns-assets"), "extract", "--tracking-uri", uri,
                 "--db", str(single), "--subject-map", str(subject_map)],
                env=stack.env, capture_output=True, text=True,
            )  # fmt: skip
            if extracted.returncode != 0:
                output = (extracted.stdout + extracted.stderr)[-2000:]
                raise LoopbackError(f"single-file extract failed: {output}")
            # With the figures sensor paused no leaderboard is built: the extraction tables only.
            skip = {LEADERBOARD.name} if args.pause_figures else set()
            tables, rows, diffs, duplicates = compare(database, single, skip)
            outcome.note(tables=tables, rows=rows, differing_tables=diffs, duplicates=duplicates)
            if diffs or duplicates:
                raise LoopbackError(f"{diffs} tables differ, {duplicates} duplicated run rows")
    except Exception as exc:  # one summary line whatever failed; the traceback goes to the log
        with outcome.log.open("a") as sink:
            traceback.print_exc(file=sink)
        if not isinstance(exc, LoopbackError):
            exc = LoopbackError(f"{type(exc).__name__}: {exc}")
        elapsed = time.monotonic() - began
        outcome.note(ok=False, elapsed_s=round(elapsed, 1), error=str(exc))
        write_json(args.json, outcome.figures)
        print(f"distributed: FAILED after {elapsed:.0f} s: {exc} (logs: {workdir}/logs)")
        return 1
    elapsed = time.monotonic() - began
    outcome.note(ok=True, elapsed_s=round(elapsed, 1))
    write_json(args.json, outcome.figures)
    f = outcome.figures
    faults = []
    if "killed" in f:
        faults.append(
            f"{f['killed']} SIGKILLed mid-run ({f['committed_before_kill']} partitions committed)"
        )
    if "redis_restart_s" in f:
        faults.append(f"Redis restarted ({f['redis_restart_s']} s)")
    if "postgres_down_s" in f:
        faults.append(f"Postgres restarted mid-run ({f['postgres_down_s']} s down)")
    where = " (DuckLake, exported)" if args.warehouse == "ducklake" else ""
    print(
        f"distributed: OK {f['partitions']} partitions over {args.workers} Celery workers; "
        f"faults: {', '.join(faults) or 'none'}; {f.get('refilled', 0)} refilled; "
        f"{f['tables']} tables / {f['rows']} rows{where} "
        "equal to a single-file extract, 0 duplicates, "
        f"no slot held; {elapsed:.0f} s"
    )
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def ducklake_loadable() -> None:
    """Fail fast, in one line, outside the ducklake extra's environment (no extension wheels)."""
    import duckdb

    from mlruns_assets.runtime.errors import UsageError
    from mlruns_assets.warehouse import ducklake

    conn = duckdb.connect()
    try:
        for name in ("postgres_scanner", "ducklake", "httpfs"):
            ducklake.load_extension(conn, name, None)
    except UsageError as exc:
        raise LoopbackError(
            f"--warehouse ducklake: {exc} (run .ci/distributed --ducklake)"
        ) from None
    finally:
        conn.close()


def write_json(path: Path | None, figures: Mapping[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(figures, indent=2, default=str) + "\n")


def kill_a_worker_mid_run(
    stack: Stack, instance: Any, workers: list[str], args: argparse.Namespace, outcome: Outcome
) -> str | None:
    """SIGKILL the process group of the worker running the first run that has committed at
    least ``--kill-after`` partitions and still has some left; its name."""
    import dagster as dg

    from mlruns_assets.runtime.worker import WORKER_TAG, parse_worker_tag

    if args.kill_after <= 0:
        return None
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        stack.check_alive()
        started = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
        for record in instance.get_run_records(started):
            run = record.dagster_run
            worker = parse_worker_tag(run.tags.get(WORKER_TAG))
            if worker is None:
                continue
            committed = len(
                instance.get_records_for_run(
                    run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=10_000
                ).records
            )
            total = _run_size(instance, run)
            per_partition = max(1, len(run.asset_selection or []))
            done = committed // per_partition
            if done < args.kill_after or done >= total:
                continue
            with contextlib.suppress(ProcessLookupError):
                pgid = os.getpgid(worker.pid)
                name = next((n for n in workers if stack.procs[n].pid == pgid), None)
                if name is None:
                    continue
                stack.stop(name, signal.SIGKILL, grace=5)
                outcome.note(killed=name, killed_run=run.run_id[:8], committed_before_kill=done,
                             run_partitions=total)  # fmt: skip
                return name
        time.sleep(0.2)
    raise LoopbackError("no run was ever mid-way to kill its worker")


def wait_quiet(stack: Stack, instance: Any, timeout: float, quiet: float = 30.0) -> float:
    """Wait until no run has been queued or in progress for ``quiet`` seconds (three figures
    sensor intervals); seconds waited."""
    import dagster as dg

    active = dg.RunsFilter(
        statuses=[
            dg.DagsterRunStatus.QUEUED,
            dg.DagsterRunStatus.NOT_STARTED,
            dg.DagsterRunStatus.STARTING,
            dg.DagsterRunStatus.STARTED,
            dg.DagsterRunStatus.CANCELING,
        ]
    )
    since = time.monotonic()

    def settled() -> bool:
        nonlocal since
        stack.check_alive()
        if instance.get_runs_count(active):
            since = time.monotonic()
        return time.monotonic() - since >= quiet

    return wait_for("no run queued or in progress", settled, timeout)


def wait_run_in_flight(stack: Stack, instance: Any, timeout: float) -> str:
    """The id of an extraction run that has committed a partition and is still running."""
    import dagster as dg

    from mlruns_assets.runtime.worker import WORKER_TAG, live_process, parse_worker_tag

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.check_alive()
        for record in instance.get_run_records(
            dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
        ):
            run = record.dagster_run
            worker = parse_worker_tag(run.tags.get(WORKER_TAG))
            if worker is None or live_process(worker) is None:  # not yet, or the killed one
                continue
            committed = instance.get_records_for_run(
                run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=1
            ).records
            if committed:
                return str(run.run_id)
        time.sleep(0.2)
    raise LoopbackError("no extraction run was ever in flight to restart Postgres under")


def _run_size(instance: Any, run: Any) -> int:
    """Partitions in a run: one, or its key range (first and last key in the run's tags) counted
    in the order of the experiment's dynamic partitions (``<slug>_runs``)."""
    tags = run.tags
    if "dagster/partition" in tags:
        return 1
    first, last = tags.get(RANGE_START), tags.get(RANGE_END)
    slug = next(iter(run.asset_selection or []), None)
    if first is None or last is None or slug is None:
        return 0
    keys = list(instance.get_dynamic_partitions(f"{slug.path[0]}_runs"))
    return keys.index(last) - keys.index(first) + 1


def missing_partitions(instance: Any, keys: Sequence[Any], partitions: Sequence[str]) -> list[str]:
    done = set(partitions)
    for key in keys:
        done &= set(instance.get_materialized_partitions(key))
    return [p for p in partitions if p not in done]


def held_slots(instance: Any) -> int:
    """Concurrency slots claimed or steps waiting for one, over every pool."""
    storage = instance.event_log_storage
    held = 0
    for pool in storage.get_concurrency_keys():
        info = storage.get_concurrency_info(pool)
        held += info.active_slot_count + len(info.pending_steps)
    return held


def compare(
    distributed: Path, single: Path, skip: set[str] | None = None
) -> tuple[int, int, int, int]:
    """(tables, rows, tables whose rows differ, (run, table) pairs whose row count differs);
    tables named in ``skip`` are left out."""
    import duckdb

    conn = duckdb.connect()
    conn.execute(f"ATTACH '{distributed}' AS d (READ_ONLY)")
    conn.execute(f"ATTACH '{single}' AS s (READ_ONLY)")
    tables = conn.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_catalog = 's' AND table_schema <> 'main' ORDER BY 1, 2"
    ).fetchall()
    tables = [(schema, table) for schema, table in tables if table not in (skip or set())]
    rows = diffs = duplicates = 0
    for schema, table in tables:
        columns = [
            c
            for (c,) in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_catalog = 's' "
                "AND table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                [schema, table],
            ).fetchall()
            if c != "extracted_at"
        ]
        cols = ", ".join(f'"{c}"' for c in columns)
        a, b = f'd."{schema}"."{table}"', f's."{schema}"."{table}"'
        only = conn.execute(
            f"SELECT (SELECT count(*) FROM (SELECT {cols} FROM {a} EXCEPT ALL "
            f"SELECT {cols} FROM {b})), (SELECT count(*) FROM (SELECT {cols} FROM {b} "
            f"EXCEPT ALL SELECT {cols} FROM {a}))"
        ).fetchone()
        assert only is not None
        diffs += int(only[0] > 0 or only[1] > 0)
        per_run = conn.execute(
            f"SELECT count(*) FROM (SELECT run_id, count(*) AS n FROM {a} GROUP BY 1) x "
            f"FULL JOIN (SELECT run_id, count(*) AS n FROM {b} GROUP BY 1) y USING (run_id) "
            "WHERE x.n IS DISTINCT FROM y.n"
        ).fetchone()
        assert per_run is not None
        duplicates += int(per_run[0])
        count = conn.execute(f"SELECT count(*) FROM {a}").fetchone()
        rows += int(count[0]) if count else 0
    return len(tables), rows, diffs, duplicates


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    e2e = sub.add_parser("e2e", help="the loopback end-to-end scenario (.ci/distributed)")
    e2e.add_argument("--runs", type=int, default=24, help="classification runs in the store")
    e2e.add_argument("--imputation-runs", type=int, default=4)
    e2e.add_argument("--experiments", type=int, default=1, help="classification experiments")
    e2e.add_argument("--workers", type=int, default=2)
    e2e.add_argument(
        "--kill-after",
        type=int,
        default=2,
        help="kill a worker once its run committed this many partitions (0: never)",
    )
    e2e.add_argument("--stall-timeout", type=float, default=30.0)
    e2e.add_argument(
        "--restart-redis", action="store_true", help="restart Redis right after the kill"
    )
    e2e.add_argument(
        "--restart-postgres",
        action="store_true",
        help="stop Postgres (fast shutdown) while a run is writing, start it again",
    )
    e2e.add_argument(
        "--postgres-down", type=float, default=20.0, help="seconds Postgres stays down"
    )
    e2e.add_argument("--timeout", type=float, default=600.0, help="per wait, in seconds")
    e2e.add_argument(
        "--pause-figures",
        action="store_true",
        help="figures sensor stopped (throughput of extraction alone; leaderboards not compared)",
    )
    e2e.add_argument(
        "--warehouse",
        choices=("file", "ducklake"),
        default="file",
        help="where the results go: one DuckDB file, or a DuckLake catalog in this Postgres with "
        "its data on the moto S3 (run from the ducklake extra's environment: .ci/distributed "
        "--ducklake)",
    )
    e2e.add_argument("--json", type=Path, help="write the scenario's figures to this file")
    e2e.add_argument("--keep", action="store_true", help="keep the work folder and its logs")
    e2e.add_argument("--verbose", "-v", action="store_true", help="each step's figures on stderr")
    args = parser.parse_args(argv)
    # Stopped from outside (a CI timeout's SIGTERM, Ctrl-C, or SIGINT to a background job, which
    # the shell started with SIGINT ignored): unwind, so that every process started is stopped.
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _interrupted)
    return run_e2e(args)


def _interrupted(signum: int, _frame: object) -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):  # once: let the cleanup finish
        signal.signal(sig, signal.SIG_IGN)
    raise LoopbackError(f"interrupted by {signal.Signals(signum).name}")


if __name__ == "__main__":
    sys.exit(main())
