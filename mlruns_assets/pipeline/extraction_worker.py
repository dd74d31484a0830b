"""What runs inside an extraction worker process (``pipeline.extraction_pool``).

This module and what it imports stay free of MLflow and Dagster: the fork server preloads it,
so a worker starts in well under a second and holds a few tens of MB before its first run
(with MLflow, ~4 s and ~150 MB more per process). A run whose artifacts are local files and
whose metric history the parent read is extracted without MLflow; any other run opens the
tracking store through MLflow in the worker, imported then (``_tracking_store``).
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from mlruns_assets.pipeline.run_extraction import ExtractionSettings, RunExtraction, extract_run
from mlruns_assets.runtime.guardrails import peak_rss, reset_peak_rss
from mlruns_assets.source.run_data import (
    LocalRunReader,
    MetricPoints,
    RunReader,
    RunRecord,
    is_file_store,
)

if TYPE_CHECKING:
    from mlruns_assets.source.tracking import TrackingStore

_client_uri: str | None = None
_store: TrackingStore | None = None


def start_worker(client_uri: str) -> None:
    """A worker's initializer: remember the parent's tracking store."""
    # The parent decides when to stop (its first Ctrl-C finishes the runs in hand); a worker
    # killed by the terminal's SIGINT would fail its partition instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    global _client_uri
    _client_uri = client_uri


def _tracking_store() -> TrackingStore:
    """The store the parent opened, reopened once in this worker (imports MLflow)."""
    global _store
    if _store is None:
        assert _client_uri is not None, "worker not started"
        from mlruns_assets.source.tracking import TrackingStore  # only for remote artifacts

        _store = TrackingStore.reopened(_client_uri)
    return _store


def extract_in_worker(
    run: RunRecord, settings: ExtractionSettings, history: MetricPoints | None
) -> tuple[RunExtraction, int]:
    """One run's tables and the worker's peak RSS while it built them."""
    reset_peak_rss()
    local = history is not None and is_file_store(run.info.artifact_uri)
    reader: RunReader = LocalRunReader() if local else _tracking_store()
    extraction = extract_run(reader, run, settings, history)
    return extraction, peak_rss()
