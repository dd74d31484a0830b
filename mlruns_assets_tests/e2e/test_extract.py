"""``mlruns-assets extract`` end to end on real demo stores (SQLite and a legacy mlruns folder)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import mlflow
import pytest

from mlruns_assets.defs.partitions import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG, range_tags
from mlruns_assets.defs.project import build_definitions
from mlruns_assets.demo.store import write_demo_store
from mlruns_assets.runtime.instance import open_instance
from mlruns_assets.runtime.settings import Settings
from mlruns_assets.source.partition_keys import run_id_of
from mlruns_assets.warehouse.catalog import asset_of_table
from mlruns_assets_tests.support.bad_runs import BadDemoStore
from mlruns_assets_tests.support.cli import Extracted, run_cli, run_extract
from mlruns_assets_tests.support.partitions import key_of, partition_runs

EXPECTED_CAUSES = {
    "truncated": "corrupt or truncated pickle in metrics/metrics_",
    "malicious": "refused to unpickle posix.system in metrics/metrics_",
    "nan_proba": "NaN or infinite probabilities",
    "label_2": "labels outside {0, 1}",
    "unmapped_codes": "subject code(s) in metrics/metrics_",
    "no_artifacts": "missing metrics artifact metrics/metrics_",
}


def _query(database: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def _statuses(home: Path, slug: str, table: str, run_ids: list[str]) -> dict[str, str]:
    """Run id -> the status of its partition."""
    with open_instance(home) as instance:
        partitions = dg.DynamicPartitionsDefinition(name=f"{slug}_runs")
        key = dg.AssetKey([slug, asset_of_table(slug)[table]])
        keys = [key_of(instance, f"{slug}_runs", run_id) for run_id in run_ids]
        status = instance.get_status_by_partition(key, keys, partitions)
    return {run_id_of(k): (v.value if v else "MISSING") for k, v in (status or {}).items()}


def test_extract_fails_each_bad_run_with_its_cause_and_keeps_the_good_ones(
    bad_store_extracted: Extracted,
) -> None:
    ex = bad_store_extracted
    assert ex.exit_code == 1, ex.output
    run_ids = {r[0] for r in _query(ex.database, "SELECT run_id FROM classification.runs")}
    assert run_ids == set(ex.store.good_run_ids)
    for run_id, label in ex.store.bad_run_ids.items():
        lines = [
            line for line in ex.output.splitlines() if line.startswith("FAILED") and run_id in line
        ]
        assert len(lines) == 1, (label, ex.output)
        assert EXPECTED_CAUSES[label] in lines[0], lines[0]
    assert ex.store.pwned_marker is not None and not ex.store.pwned_marker.exists()


def test_extract_excludes_deleted_running_failed_and_synthetic_runs(
    bad_store_extracted: Extracted,
) -> None:
    ex = bad_store_extracted
    with open_instance(ex.dagster_home) as instance:
        keys = set(partition_runs(instance, "classification_runs"))
    assert keys == set(ex.store.good_run_ids) | set(ex.store.bad_run_ids)
    assert not keys & set(ex.store.excluded_run_ids)
    synthetic_rows = _query(
        ex.database,
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'synth_classification'",
    )
    assert synthetic_rows == [(0,)]


def test_partition_status_agrees_with_the_database(bad_store_extracted: Extracted) -> None:
    ex = bad_store_extracted
    keys = ex.store.good_run_ids + list(ex.store.bad_run_ids)
    for table in ("runs", "predictions", "essential_metrics"):
        status = _statuses(ex.dagster_home, "classification", table, keys)
        assert {k for k, v in status.items() if v == "MATERIALIZED"} == set(ex.store.good_run_ids)
        assert {k for k, v in status.items() if v == "FAILED"} == set(ex.store.bad_run_ids)


def test_metric_history_holds_every_logged_point(bad_store_extracted: Extracted) -> None:
    ex = bad_store_extracted
    client = mlflow.MlflowClient(ex.store.tracking_uri)
    expected = 0
    for run_id in ex.store.good_run_ids:
        run = client.get_run(run_id)
        expected += sum(len(client.get_metric_history(run_id, k)) for k in run.data.metrics)
    got = _query(ex.database, "SELECT count(*) FROM classification.metric_history")[0][0]
    assert got == expected and expected > len(ex.store.good_run_ids)
    steps = _query(ex.database, "SELECT count(DISTINCT step) FROM classification.metric_history")[
        0
    ][0]
    assert steps > 1  # the full history, not only the last value


def test_no_original_subject_code_reaches_the_database(bad_store_extracted: Extracted) -> None:
    ex = bad_store_extracted
    codes = {
        r[0]
        for r in _query(ex.database, "SELECT DISTINCT subject_code FROM classification.predictions")
    }
    assert codes and all(c[0] in "HG" and c[1:].isdigit() for c in codes)


def test_rerun_skips_every_materialized_partition_without_new_events(
    bad_store_extracted: Extracted, tmp_path: Path
) -> None:
    ex = bad_store_extracted
    # Work on a copy so the session fixture stays as extracted.
    database, home = tmp_path / "results.duckdb", tmp_path / "home"
    shutil.copy(ex.database, database)
    shutil.copytree(ex.dagster_home, home)
    key = dg.AssetKey(["classification", "runs"])
    with open_instance(home) as instance:
        before = instance.fetch_materializations(key, limit=1000).records
    again = run_extract(ex.store, database, home, "--subject-map", str(ex.store.subject_map_path))
    with open_instance(home) as instance:
        after = instance.fetch_materializations(key, limit=1000).records
    assert len(after) == len(before)
    assert (
        f"skipped {len(ex.store.good_run_ids) + len(ex.store.imputation_run_ids)}" in again.output
    )
    # The bad runs are retried (failed partitions are not skipped) and fail again.
    assert again.exit_code == 1
    assert f"failed {len(ex.store.bad_run_ids)}" in again.output


def test_file_store_extracts_cleanly_and_resumes_after_a_partial_run(tmp_path: Path) -> None:
    store = write_demo_store(tmp_path / "store", backend="file", runs=6, bootstraps=20)
    database, home = tmp_path / "results.duckdb", tmp_path / "home"
    config = Settings(
        tracking_uri=store.tracking_uri,
        database=str(database),
        experiments=("Classification",),
        subject_map=str(store.subject_map_path),
    )
    # A partial extraction: two partitions materialized through the same job the UI runs.
    client = mlflow.MlflowClient(store.tracking_uri)
    ordered = [
        r.info.run_id
        for r in client.search_runs(
            [client.get_experiment_by_name("Classification").experiment_id],
            order_by=["attributes.end_time ASC"],
        )
    ]
    defs = build_definitions(config)
    with open_instance(home) as instance:
        instance.add_dynamic_partitions("classification_runs", ordered)
        job = defs.resolve_job_def("classification_extraction_job")
        partial = job.execute_in_process(instance=instance, tags=range_tags(ordered[:2]))
    assert partial.success
    # The asset checks ran after the extraction in the same run, one per table plus the
    # experiment-wide ones, and all passed on good data.
    evaluations = partial.get_asset_check_evaluations()
    assert len(evaluations) == 11 + 3
    assert all(e.passed for e in evaluations), [e for e in evaluations if not e.passed]
    assert _query(database, "SELECT count(*) FROM classification.runs") == [(2,)]

    result = run_extract(
        store,
        database,
        home,
        "--experiment",
        "Classification",
        "--subject-map",
        str(store.subject_map_path),
        "--partitions-per-run",
        "3",
    )
    assert result.exit_code == 0, result.output
    assert "materialized 4, skipped 2" in result.output
    assert _query(database, "SELECT count(*) FROM classification.runs") == [(6,)]
    with open_instance(home) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="classification_extraction_job"))
        keys = instance.get_dynamic_partitions("classification_runs")
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    # The missing four in runs of at most three, after the partial run's two.
    covered = [
        1
        if PARTITION_TAG in r.tags
        else keys.index(r.tags[RANGE_END_TAG]) + 1 - keys.index(r.tags[RANGE_START_TAG])
        for r in runs
    ]
    assert sorted(covered) == [1, 2, 3]
    assert _query(
        database, "SELECT count(*), count(DISTINCT run_id) FROM classification.essential_metrics"
    ) == [(6, 6)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--experiment", "NoSuchExperiment"], "unknown experiment(s) NoSuchExperiment"),
        (["--db", "/proc/forbidden/results.duckdb"], "is not writable"),
        (["--partitions-per-run", "0"], "'--partitions-per-run': 0 is not in the range x>=1"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    bad_store_extracted: Extracted, tmp_path: Path, args: list[str], message: str
) -> None:
    base = {
        "--tracking-uri": bad_store_extracted.store.tracking_uri,
        "--db": str(tmp_path / "x.duckdb"),
    }
    extra = dict(zip(args[::2], args[1::2], strict=True))
    argv = ["extract", "--dagster-home", str(tmp_path / "home")]
    for flag, value in {**base, **extra}.items():
        argv += [flag, value]
    if "--experiment" in extra:
        argv += ["--experiment", extra["--experiment"]]
    code, output = run_cli(*argv)
    assert code == 2
    assert message in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "uri",
    ["http://127.0.0.1:9", "sqlite:////nonexistent/mlflow.db", "/nonexistent/mlruns"],
)
def test_unreachable_tracking_store_exits_2(tmp_path: Path, uri: str) -> None:
    code, output = run_cli(
        "extract",
        "--tracking-uri",
        uri,
        "--db",
        str(tmp_path / "x.duckdb"),
        "--dagster-home",
        str(tmp_path / "home"),
    )
    assert code == 2, output
    assert output.startswith("mlruns-assets: error:") and "Traceback" not in output
    assert not Path("/nonexistent").exists()  # nothing was created in the tracking store's place


def test_check_passes_on_the_extraction_and_fails_on_a_bad_probability(
    bad_store_extracted: Extracted, tmp_path: Path
) -> None:
    ex = bad_store_extracted
    code, output = run_cli("check", "--db", str(ex.database), "--anonymized")
    assert code == 0, output
    assert "0 ERROR failed" in output
    broken = tmp_path / "broken.duckdb"
    shutil.copy(ex.database, broken)
    with duckdb.connect(str(broken)) as conn:
        conn.execute(
            "UPDATE classification.predictions SET y_prob = 1.5 WHERE rowid = "
            "(SELECT min(rowid) FROM classification.predictions)"
        )
    code, output = run_cli("check", "--db", str(broken), "--anonymized")
    assert code == 1
    failing = [line for line in output.splitlines() if line.startswith("FAIL")]
    assert len(failing) == 1 and "y_prob_in_unit_interval" in failing[0]


def test_a_garbage_collected_run_loses_its_partition_and_rows(tmp_path: Path) -> None:
    store = write_demo_store(tmp_path / "store", runs=3, bootstraps=20, imputation_runs=0)
    database, home = tmp_path / "results.duckdb", tmp_path / "home"
    args = ("--experiment", "Classification", "--subject-map", str(store.subject_map_path))
    assert run_extract(store, database, home, *args).exit_code == 0
    gone = store.good_run_ids[0]
    # Deleted and then purged by MLflow's own `mlflow gc`: in neither the active nor the
    # deleted listing any more.
    mlflow.MlflowClient(store.tracking_uri).delete_run(gone)
    purge = subprocess.run(
        [sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", store.tracking_uri,
         "--tracking-uri", store.tracking_uri, "--run-ids", gone],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert purge.returncode == 0, purge.stdout + purge.stderr
    again = run_extract(store, database, home, *args)
    assert again.exit_code == 0, again.output
    assert "removed 1" in again.output
    assert _query(
        database, f"SELECT count(*) FROM classification.runs WHERE run_id = '{gone}'"
    ) == [(0,)]
    with open_instance(home) as instance:
        assert sorted(partition_runs(instance, "classification_runs")) == sorted(
            store.good_run_ids[1:]
        )


def test_extract_rebuilds_the_leaderboard_of_what_it_committed(
    bad_store_extracted: Extracted[BadDemoStore],
) -> None:
    ex = bad_store_extracted
    ranked = _query(ex.database, "SELECT run_id FROM classification.leaderboard ORDER BY rank")
    committed = _query(ex.database, "SELECT run_id FROM classification.essential_metrics")
    assert sorted(r[0] for r in ranked) == sorted(r[0] for r in committed)
    assert {r[0] for r in committed} == set(ex.store.good_run_ids)
