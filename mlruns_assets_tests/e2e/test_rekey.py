"""Partitions keyed the old way (the bare run id) or by a run's older name move to
``<current name>@<run id>`` with ``mlruns-assets rekey``: what was materialized stays
materialized (no run is extracted again), what was failed is extracted again, rows stay as they
are, and a move cut short is finished by the next ``rekey``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg
import mlflow

from mlruns_assets.cli.figures_refresh import render_stale_curves
from mlruns_assets.defs.partitions import range_tags
from mlruns_assets.defs.project import build_definitions
from mlruns_assets.demo.store import DemoStore, write_demo_store
from mlruns_assets.runtime.instance import open_instance
from mlruns_assets.runtime.settings import Settings
from mlruns_assets.source.tracking import TrackingStore
from mlruns_assets_tests.support.cli import run_cli, run_extract

PARTITIONS = "classification_runs"
STRATOS = dg.AssetKey(["classification", "stratos"])
CURVES = dg.AssetKey(["classification", "stratos_curves"])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _statuses(instance: dg.DagsterInstance, asset: dg.AssetKey) -> dict[str, str]:
    keys = instance.get_dynamic_partitions(PARTITIONS)
    found = instance.get_status_by_partition(
        asset, keys, dg.DynamicPartitionsDefinition(name=PARTITIONS)
    )
    return {k: (v.value if v else "MISSING") for k, v in (found or {}).items()}


def _extracted_the_old_way(store: DemoStore, database: Path, home: Path) -> list[str]:
    """Partitions keyed by bare run ids, materialized through the extraction job, the way
    versions before run names in keys left them; the runs' ids in end-time order."""
    client = mlflow.MlflowClient(store.tracking_uri)
    experiment = client.get_experiment_by_name("Classification")
    assert experiment is not None
    ordered = [
        r.info.run_id
        for r in client.search_runs(
            [experiment.experiment_id], order_by=["attributes.end_time ASC"]
        )
    ]
    config = Settings(
        tracking_uri=store.tracking_uri,
        database=str(database),
        experiments=("Classification",),
        subject_map=str(store.subject_map_path),
    )
    defs = build_definitions(config)
    job = defs.resolve_job_def("classification_extraction_job")
    with open_instance(home) as instance:
        instance.add_dynamic_partitions(PARTITIONS, ordered)
        job.execute_in_process(instance=instance, tags=range_tags(ordered), raise_on_error=False)
        render_stale_curves(defs, instance, TrackingStore(store.tracking_uri).experiments())
    return ordered


def test_rekey_names_partitions_and_keeps_their_checkpoints(tmp_path: Path) -> None:
    store = write_demo_store(tmp_path / "store", runs=4, bootstraps=20, imputation_runs=0)
    database, home = tmp_path / "results.duckdb", tmp_path / "home"
    client = mlflow.MlflowClient(store.tracking_uri)
    # One run's metrics artifact is broken: its partition fails.
    broken = store.good_run_ids[0]
    (artifact,) = (tmp_path / "store" / "artifacts").glob(
        f"*/{broken}/artifacts/metrics/metrics_*.pickle"
    )
    artifact.write_bytes(b"not a pickle")
    ordered = _extracted_the_old_way(store, database, home)
    renamed, kept = [r for r in ordered if r != broken][:2]
    client.update_run(renamed, name="CATBOOST_eval-auc__simple1.0__SAITS__renamed")
    names = {r: client.get_run(r).info.run_name for r in ordered}
    wanted = {r: f"{names[r]}@{r}" for r in ordered}
    assets = (STRATOS, CURVES, dg.AssetKey(["classification", "runs"]))
    with open_instance(home) as instance:
        statuses = {asset: _statuses(instance, asset) for asset in assets}
        before = statuses[STRATOS]
        assert before[broken] == "FAILED"
        assert list(statuses[CURVES].values()).count("MATERIALIZED") == 3
        assert [k for k, v in before.items() if v == "MATERIALIZED"] == [
            r for r in ordered if r != broken
        ]
        # A move cut short after adding the new key: the next rekey finishes it.
        instance.add_dynamic_partitions(PARTITIONS, [wanted[kept]])
    args = ("--tracking-uri", store.tracking_uri, "--db", str(database))
    args += ("--dagster-home", str(home), "--experiment", "Classification")

    code, output = run_cli("status", *args, "--subject-map", str(store.subject_map_path))
    assert code == 0, output
    assert "partitions are keyed by run id only or by an older run name" in output

    code, output = run_cli("rekey", *args, "--dry-run")
    assert code == 0, output
    assert f"Classification: {renamed} -> {wanted[renamed]}" in output
    assert "would re-key 4 partitions" in output
    with open_instance(home) as instance:
        assert instance.get_dynamic_partitions(PARTITIONS) == [*ordered, wanted[kept]]

    database_before = _digest(database)
    code, output = run_cli("rekey", *args)
    assert code == 0, output
    assert "re-keyed 4 partitions" in output
    assert _digest(database) == database_before  # rows are keyed by run id: untouched
    with open_instance(home) as instance:
        assert sorted(instance.get_dynamic_partitions(PARTITIONS)) == sorted(wanted.values())
        for asset in assets:
            after = _statuses(instance, asset)
            assert after == {
                wanted[r]: "MISSING" if r == broken else statuses[asset][r] for r in ordered
            }, asset

    # Nothing is extracted again but the run renamed (its MLflow record changed) and the one
    # that failed (it fails again); no key is left to name.
    again = run_extract(store, database, home, "--subject-map", str(store.subject_map_path))
    assert again.exit_code == 1, again.output
    assert "materialized 1, skipped 2" in again.output, again.output
    assert "1 stale: the run changed in MLflow" in again.output, again.output
    assert "`mlruns-assets rekey`" not in again.output
    code, output = run_cli("rekey", *args)
    assert code == 0 and "re-keyed 0 partitions" in output, output


def test_rekey_refuses_while_dagster_runs_are_in_progress(tmp_path: Path) -> None:
    store = write_demo_store(tmp_path / "store", runs=2, bootstraps=20, imputation_runs=0)
    database, home = tmp_path / "results.duckdb", tmp_path / "home"
    _extracted_the_old_way(store, database, home)
    with open_instance(home) as instance:
        # Another job's run, started (no worker tag: not one an `extract` left orphaned).
        running = instance.add_run(
            dg.DagsterRun(job_name="another_job", status=dg.DagsterRunStatus.STARTED)
        )
    args = ("--tracking-uri", store.tracking_uri, "--db", str(database))
    args += ("--dagster-home", str(home))
    code, output = run_cli("rekey", *args)
    assert code == 2
    (line,) = output.strip().splitlines()
    assert running.run_id in line and "re-key when none is" in line
    with open_instance(home) as instance:  # nothing moved
        assert all("@" not in k for k in instance.get_dynamic_partitions(PARTITIONS))
