"""A run's pickled artifacts, found by folder and loaded with the allow-list unpickler under the
memory guard."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlruns_assets.runtime.guardrails import MemoryGuard, format_bytes
from mlruns_assets.source.safe_pickle import load_untrusted_pickle
from mlruns_assets.source.tracking import RunArtifacts

METRICS_FOLDER = "metrics"
IMPUTATION_FOLDER = "imputation"


def load_pickle_artifact(
    artifacts: RunArtifacts,
    folder: str,
    expected: str,
    memory: MemoryGuard,
    heartbeat: Callable[[str], None] | None = None,
) -> tuple[Any, str]:
    """The run's one ``{folder}/{folder}_*.pickle``, loaded with the allow-list unpickler.

    ``expected`` names the artifact in the error when there is none. ``heartbeat`` reports
    before and after the load, so a slow one shows in the progress."""
    candidates = [
        (path, size)
        for path, size in artifacts.list(folder)
        if path.rsplit("/", 1)[-1].startswith(f"{folder}_") and path.endswith(".pickle")
    ]
    if not candidates:
        raise FileNotFoundError(f"missing {folder} artifact {expected}")
    if len(candidates) > 1:
        names = ", ".join(p for p, _ in candidates)
        raise ValueError(f"several {folder} artifacts ({names}): cannot tell which is the run's")
    path, size = candidates[0]
    memory.check(f"loading {path}", size or 0)
    if heartbeat is not None:
        heartbeat(f"loading {path} ({format_bytes(size or 0)})")
    loaded = load_untrusted_pickle(artifacts.local_path(path), display_name=path)
    if heartbeat is not None:
        heartbeat(f"loaded {path}")
    return loaded, path


def load_metrics_artifact(
    artifacts: RunArtifacts,
    memory: MemoryGuard,
    heartbeat: Callable[[str], None] | None = None,
) -> tuple[Any, str]:
    """The run's ``metrics/metrics_*.pickle``."""
    expected = f"{METRICS_FOLDER}/metrics_{artifacts.run.info.run_name}.pickle"
    return load_pickle_artifact(artifacts, METRICS_FOLDER, expected, memory, heartbeat)


def load_imputation_artifact(
    artifacts: RunArtifacts,
    memory: MemoryGuard,
    heartbeat: Callable[[str], None] | None = None,
) -> tuple[Any, str]:
    """The run's ``imputation/imputation_*.pickle``."""
    expected = f"{IMPUTATION_FOLDER}/{IMPUTATION_FOLDER}_<model>.pickle"
    return load_pickle_artifact(artifacts, IMPUTATION_FOLDER, expected, memory, heartbeat)
