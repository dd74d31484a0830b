"""An older MLflow (2.17) in its own virtual environment, as a lab that never upgraded has it:
built once with uv and kept in a persistent cache folder, then used to write a tracking store
and to read it back, each time as a child process.

The environment is resolved as of MLflow 2.17.2's release (``--exclude-newer``): with today's
SQLAlchemy 2.1, MLflow 2.17 cannot even be imported (``FallbackAsyncAdaptedQueuePool`` is gone).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MLFLOW_VERSION = "2.17.2"
SCHEMA_REVISION = "f5a4f2784254"  # the alembic head of MLflow 2.17
RESOLVED_AS_OF = "2024-12-01"
EXPERIMENT = "Lab"


def cache_folder() -> Path:
    """``~/.cache/mlruns-assets-tests/mlflow-2.17`` (or under ``$XDG_CACHE_HOME``)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mlruns-assets-tests" / "mlflow-2.17"


def uv_command() -> list[str] | None:
    """How to run uv here: ``uv`` on PATH, or ``python3 -m uv`` (as CI installs it)."""
    if found := shutil.which("uv"):
        return [found]
    for python in (sys.executable, shutil.which("python3")):
        if (
            python
            and subprocess.run([python, "-m", "uv", "--version"], capture_output=True).returncode
            == 0
        ):
            return [python, "-m", "uv"]
    return None


def _python_of(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _works(venv: Path) -> bool:
    python = _python_of(venv)
    if not (venv / "complete").is_file() or not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import mlflow; print(mlflow.__version__)"],
        capture_output=True,
        text=True,
    )
    return probe.returncode == 0 and probe.stdout.strip() == MLFLOW_VERSION


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """One builder at a time across processes (a no-op where ``fcntl`` does not exist)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build(venv: Path, uv: list[str]) -> None:
    shutil.rmtree(venv, ignore_errors=True)
    minor = min(sys.version_info.minor, 12)  # MLflow 2.17 supports Python <= 3.12
    steps = [
        [*uv, "venv", "--quiet", "--python", f"3.{minor}", str(venv)],
        [
            *uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(_python_of(venv)),
            "--exclude-newer",
            RESOLVED_AS_OF,
            f"mlflow=={MLFLOW_VERSION}",
        ],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(
                f"building the MLflow {MLFLOW_VERSION} environment failed: {' '.join(step)}: "
                f"{done.stderr.strip()[-2000:]}"
            )
    (venv / "complete").write_text(MLFLOW_VERSION)


def legacy_mlflow_python(scratch: Path) -> Path:
    """The Python of a virtual environment with MLflow 2.17.2: the cached one when it works,
    otherwise built (in the cache folder, or in ``scratch`` when the cache is not writable)."""
    uv = uv_command()
    venv = cache_folder()
    try:
        venv.parent.mkdir(parents=True, exist_ok=True)
        writable = os.access(venv.parent, os.W_OK)
    except OSError:
        writable = False
    if not writable:
        venv = scratch / "mlflow-2.17"
    with _locked(venv.parent / f"{venv.name}.lock"):
        if not _works(venv):
            if uv is None:
                raise RuntimeError("uv is not available (neither on PATH nor as python3 -m uv)")
            _build(venv, uv)
    return _python_of(venv)


WRITE_SCRIPT = r"""
import json, pathlib, sys
import mlflow

root = pathlib.Path(sys.argv[1])
mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
experiment = mlflow.create_experiment(sys.argv[2], artifact_location=(root / "artifacts").as_uri())
runs = []
for i in range(3):
    with mlflow.start_run(experiment_id=experiment, run_name=f"lab-run-{i}") as run:
        mlflow.log_param("seed", str(i))
        points = []
        for step in range(4):
            value = round(1.0 / (step + 1 + i), 6)
            mlflow.log_metric("loss", value, step=step)
            points.append(["loss", step, value])
        mlflow.log_metric("auroc", 0.7 + 0.05 * i, step=0)
        points.append(["auroc", 0, 0.7 + 0.05 * i])
        if i == 0:
            note = root / "note.txt"
            note.write_text("a small artifact")
            mlflow.log_artifact(str(note))
    runs.append({"run_id": run.info.run_id, "points": points})
print(json.dumps({"version": mlflow.__version__, "experiment_id": experiment, "runs": runs}))
"""

READ_SCRIPT = r"""
import json, sys
from mlflow import MlflowClient

client = MlflowClient(sys.argv[1])
experiment = client.get_experiment_by_name(sys.argv[2])
runs = client.search_runs([experiment.experiment_id])
print(json.dumps(sorted(r.info.run_id for r in runs)))
"""


@dataclass(frozen=True)
class LegacyStore:
    """A SQLite tracking store written by MLflow 2.17, and what was logged to it."""

    folder: Path
    mlflow_version: str
    experiment_id: str
    points: dict[str, list[tuple[str, int, float]]]  # run id -> (key, step, value)

    @property
    def db_path(self) -> Path:
        return self.folder / "mlflow.db"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.db_path}"


def _run(python: Path, script: str, *args: str, cwd: Path) -> str:
    done = subprocess.run(
        [str(python), "-c", script, *args],
        capture_output=True,
        text=True,
        cwd=cwd,  # MLflow 2.17 may create ./mlruns (the default artifact root): keep it here
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHON"))},
            "PYTHONNOUSERSITE": "1",
        },
    )
    if done.returncode != 0:
        raise RuntimeError(f"MLflow {MLFLOW_VERSION} script failed: {done.stderr.strip()[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def write_legacy_store(python: Path, folder: Path) -> LegacyStore:
    """3 runs of experiment "Lab" with a few metric points each and one small artifact."""
    folder.mkdir(parents=True, exist_ok=True)
    out = json.loads(_run(python, WRITE_SCRIPT, str(folder), EXPERIMENT, cwd=folder))
    points = {
        r["run_id"]: [(key, int(step), float(value)) for key, step, value in r["points"]]
        for r in out["runs"]
    }
    return LegacyStore(folder, out["version"], str(out["experiment_id"]), points)


def legacy_run_ids(python: Path, store: LegacyStore) -> list[str]:
    """The run ids that MLflow 2.17 itself finds in the store (``search_runs``)."""
    return list(
        json.loads(_run(python, READ_SCRIPT, store.tracking_uri, EXPERIMENT, cwd=store.folder))
    )
