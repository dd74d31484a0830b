"""``mlruns-assets subject-map``: build or extend the private re-anonymization map."""

from __future__ import annotations

import csv
from pathlib import Path

import click

from mlruns_assets.cli.options import kind_pairs
from mlruns_assets.pipeline.subject_inventory import collect_subjects
from mlruns_assets.runtime.errors import ExtractionError, TrackingStoreError, UsageError
from mlruns_assets.runtime.settings import Kind, Settings
from mlruns_assets.source.discovery import with_kinds
from mlruns_assets.source.tracking import TrackingStore
from mlruns_assets.transform.subjects import extend_subject_map, write_subject_map


def read_map_rows(path: Path) -> list[tuple[str, str]]:
    """The rows of an existing CSV map, in file order (a new file: none)."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"original", "anonymized"} <= set(reader.fieldnames):
            raise UsageError(
                f"{path} is not a subject map (header 'original,anonymized'); "
                "use --force to replace it"
            )
        return [(row["original"].strip(), row["anonymized"].strip()) for row in reader]


@click.command(
    "subject-map",
    epilog="Example: mlruns-assets subject-map --tracking-uri demo/store/mlflow.db "
    "--out private/subject_map.csv\n\n"
    "Run it again after new runs: existing subjects keep their codes, new ones are appended.\n\n"
    "Exit codes: 0 written (or nothing new), 2 bad arguments or no subject codes found.",
)
@click.option("--tracking-uri", required=True, metavar="URI", help=Settings.help("tracking_uri"))
@click.option(
    "--experiment",
    "experiments",
    multiple=True,
    metavar="NAME",
    help="experiments whose subjects to map (repeatable) [default: every one with runs]",
)
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    metavar="NAME=KIND",
    callback=kind_pairs,
    help="an experiment's kind, as for extract",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="the private map (CSV, written with mode 0600); keep it out of anything published",
)
@click.option(
    "--force",
    is_flag=True,
    help="rebuild the map from scratch, renumbering every subject (default: keep the existing "
    "assignments and append new subjects)",
)
def subject_map_command(
    tracking_uri: str,
    experiments: tuple[str, ...],
    kinds: dict[str, Kind],
    out: Path,
    force: bool,
) -> int:
    """Number every subject code that the runs of the experiments carry (classification: test
    predictions and the train/test splits of dict_arrays; imputation: every split of the
    imputation pickle): H001... controls, G001... cases, S001... subjects whose class no run
    records, each class in sorted order."""
    try:
        store = TrackingStore(tracking_uri)
        found = store.experiments(experiments or None)
    except TrackingStoreError as exc:
        raise UsageError(str(exc)) from None
    unknown = sorted(set(kinds) - {e.name for e in found})
    if unknown:
        raise UsageError(f"--kind names no experiment of the store: {', '.join(unknown)}")
    settings = with_kinds(Settings(tracking_uri, str(out), kinds=kinds), store, found)
    existing = [] if force or not out.exists() else read_map_rows(out)
    inventory = collect_subjects(store, [(e, settings.kind_of(e.name)) for e in found])
    for run_id, cause in inventory.unreadable.items():
        click.echo(f"skipped run {run_id}: {cause}", err=True)
    if not inventory.labels and not existing:
        names = ", ".join(e.name for e in found) or "none"
        raise UsageError(
            f"no subject codes in the runs of {names} (maps come from classification and "
            "imputation runs; see --kind)"
        )
    try:
        rows = extend_subject_map(existing, inventory.labels)
    except ExtractionError as exc:
        raise UsageError(str(exc)) from None
    added = len(rows) - len(existing)
    if existing and not added:
        click.echo(f"no new subjects: {out} keeps its {len(existing)}")
        return 0
    write_subject_map(rows, out)
    kept = f" ({len(existing)} kept)" if existing else ""
    click.echo(f"wrote {added} new subjects to {out}{kept}; private: keep it out of public outputs")
    return 0
