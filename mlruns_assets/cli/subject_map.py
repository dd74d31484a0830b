"""``mlruns-assets subject-map``: build a re-anonymization map from an experiment's runs."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from mlruns_assets.runtime.guardrails import MemoryGuard
from mlruns_assets.source.artifacts import load_metrics_artifact
from mlruns_assets.source.tracking import TrackingStore, exclusion_reason
from mlruns_assets.transform.stratos_tables import read_test_predictions
from mlruns_assets.transform.subjects import build_subject_map, write_subject_map


def build_map_from_store(tracking_uri: str, experiment_name: str, out: Path) -> int:
    """Read each run's test subjects and labels (one pickle at a time), write the map, return
    how many subjects it holds. Only the codes are kept between runs."""
    store = TrackingStore(tracking_uri)
    (experiment,) = store.experiments([experiment_name])
    labels: dict[str, int] = {}
    for run in store.iter_runs(experiment.experiment_id):
        if exclusion_reason(run, experiment.name, ("FINISHED",)) is not None:
            continue
        with store.artifacts(run) as artifacts:
            try:
                metrics, path = load_metrics_artifact(artifacts, MemoryGuard(None))
                codes, y, _, _ = read_test_predictions(metrics, path)
            except Exception:  # runs that cannot be read are reported by extract, not here
                continue
        pairs = zip(np.asarray(codes).astype(str).tolist(), y.tolist(), strict=True)
        labels.update(
            {code: label for code, label in pairs}
        )  # bounded: one label per distinct subject code, no run data
    rows = build_subject_map(labels.items())
    write_subject_map(rows, out)
    return len(rows)


@click.command(
    "subject-map",
    epilog="Example: mlruns-assets subject-map --tracking-uri demo/store/mlflow.db --experiment "
    "Classification --out private/subject_map.csv\n\nExit codes: 0 written, 2 bad arguments.",
)
@click.option("--tracking-uri", required=True, metavar="URI", help="the MLflow tracking store")
@click.option("--experiment", required=True, metavar="NAME", help="the classification experiment")
@click.option(
    "--out",
    required=True,
    metavar="FILE",
    help="the private map to write (CSV); keep it out of anything published",
)
def subject_map_command(tracking_uri: str, experiment: str, out: str) -> None:
    """Build a private re-anonymization map (H001... controls, G001... cases, sorted per
    class) from the test subjects of an experiment's runs."""
    n = build_map_from_store(tracking_uri, experiment, Path(out))
    click.echo(f"wrote {n} subjects to {out} (private: keep it out of public outputs)")
