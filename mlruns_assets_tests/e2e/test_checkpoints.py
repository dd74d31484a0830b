"""The checkpoint vouches only for real rows: rows in *this* database, written under *these*
settings, from *this* version of the MLflow run (issue 12). A real MLflow store, real DuckDB
files and a persistent Dagster instance, driven through the command."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from mlflow.tracking import MlflowClient

from mlruns_assets.defs.checkpoints import report_changed_versions, source_asset_key
from mlruns_assets.defs.partitions import range_tags
from mlruns_assets.defs.project import build_definitions
from mlruns_assets.demo.store import DemoStore, write_demo_store
from mlruns_assets.runtime.instance import default_dagster_home, open_instance
from mlruns_assets.runtime.settings import Settings
from mlruns_assets.source.partition_keys import run_id_of
from mlruns_assets.source.tracking import TrackingStore, run_version
from mlruns_assets_tests.support.cli import run_cli
from mlruns_assets_tests.support.partitions import key_of
from mlruns_assets_tests.support.webserver import clean_environ, graphql, running_webserver

ORIGINAL = r"^PLR\d{4}$"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    root = tmp_path_factory.mktemp("checkpoints")
    return write_demo_store(
        root / "store", runs=3, bootstraps=20, n_test=30, imputation_runs=2, signal_length=50
    )


def extract(demo: DemoStore, database: Path, *extra: str) -> tuple[int, str]:
    return run_cli("extract", "--tracking-uri", demo.tracking_uri, "--db", str(database), *extra)


def status(demo: DemoStore, database: Path, *extra: str) -> str:
    code, output = run_cli(
        "status", "--tracking-uri", demo.tracking_uri, "--db", str(database), *extra
    )
    assert code == 0, output
    return output


def summary_counts(output: str) -> dict[str, int]:
    line = next(line for line in output.splitlines() if line.startswith("materialized "))
    return {m[0]: int(m[1]) for m in re.findall(r"(\w+) (\d+)", line)}


def rows_by_table(database: Path) -> dict[str, dict[str, int]]:
    """schema.table -> run_id -> rows."""
    with duckdb.connect(str(database), read_only=True) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('classification', 'imputation')"
        ).fetchall()
        return {
            f"{s}.{t}": dict(
                conn.execute(f'SELECT run_id, count(*) FROM "{s}"."{t}" GROUP BY 1').fetchall()
            )
            for s, t in tables
        }


def original_codes(database: Path) -> dict[str, int]:
    """Rows with an original subject code, per table that holds subject codes."""
    with duckdb.connect(str(database), read_only=True) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.columns "
            "WHERE column_name = 'subject_code'"
        ).fetchall()
        counts = {}
        for schema, table in tables:
            row = conn.execute(
                f'SELECT count(*) FROM "{schema}"."{table}" WHERE regexp_matches(subject_code, ?)',
                [ORIGINAL],
            ).fetchone()
            counts[f"{schema}.{table}"] = row[0] if row else 0
        return counts


def every_run(demo: DemoStore) -> int:
    return len(demo.good_run_ids) + len(demo.imputation_run_ids)


def test_two_databases_in_one_folder_each_get_their_rows(demo: DemoStore, tmp_path: Path) -> None:
    first, second = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    code, output = extract(demo, first)
    assert code == 0, output
    code, output = extract(demo, second)
    assert code == 0, output
    assert summary_counts(output)["materialized"] == every_run(demo)
    assert rows_by_table(second) == rows_by_table(first)
    assert default_dagster_home(first) != default_dagster_home(second)
    assert (tmp_path / ".dagster" / "a.duckdb" / "dagster.yaml").is_file()
    assert (tmp_path / ".dagster" / "b.duckdb" / "dagster.yaml").is_file()


def test_a_deleted_database_is_rebuilt(demo: DemoStore, tmp_path: Path) -> None:
    database = tmp_path / "r.duckdb"
    assert extract(demo, database)[0] == 0
    reference = rows_by_table(database)
    database.unlink()
    listed = status(demo, database)
    assert f"{every_run(demo)} to extract, 0 up to date" in listed
    assert "missing: the database does not exist yet" in listed
    assert not database.exists()  # status changes nothing
    code, output = extract(demo, database)
    assert code == 0, output
    assert summary_counts(output)["materialized"] == every_run(demo)
    assert "missing: recorded in another database" in output
    assert rows_by_table(database) == reference
    # A copy of another database (another id) is not vouched for either.
    other = tmp_path / "other.duckdb"
    assert extract(demo, other)[0] == 0
    shutil.copyfile(other, database)
    assert f"{every_run(demo)} to extract" in status(demo, database)


def test_switching_to_a_subject_map_leaves_no_original_code(
    demo: DemoStore, tmp_path: Path
) -> None:
    database = tmp_path / "r.duckdb"
    assert extract(demo, database)[0] == 0
    before = original_codes(database)
    assert before["classification.predictions"] > 0
    assert before["imputation.preprocessed_signals"] > 0
    # The check covers every table holding subject codes, the signals included.
    code, output = run_cli("check", "--db", str(database), "--anonymized")
    assert code == 1
    failing = [line for line in output.splitlines() if "no_original_subject_codes" in line]
    assert len(failing) == 2 and all(line.startswith("FAIL") for line in failing)
    assert "preprocessed_signals" in " ".join(failing)

    mapped = ("--subject-map", str(demo.subject_map_path))
    listed = status(demo, database, *mapped)
    assert f"{every_run(demo)} to extract" in listed and "stale: subject map changed" in listed
    code, output = extract(demo, database, *mapped)
    assert code == 0, output
    assert summary_counts(output)["materialized"] == every_run(demo)
    assert set(original_codes(database).values()) == {0}
    assert run_cli("check", "--db", str(database), *mapped)[0] == 0
    code, output = extract(demo, database, *mapped)  # nothing left to do
    assert summary_counts(output)["materialized"] == 0, output


def test_a_failing_stale_partition_loses_its_old_rows(demo: DemoStore, tmp_path: Path) -> None:
    database = tmp_path / "r.duckdb"
    assert extract(demo, database)[0] == 0
    # A map that lacks one test subject of the classification runs: those runs fail under it.
    lines = demo.subject_map_path.read_text().splitlines()
    with duckdb.connect(str(database), read_only=True) as conn:
        row = conn.execute("SELECT min(subject_code) FROM classification.predictions").fetchone()
    assert row is not None
    dropped = row[0]
    partial = tmp_path / "partial_map.csv"
    partial.write_text("\n".join(line for line in lines if not line.startswith(dropped)) + "\n")
    code, output = extract(demo, database, "--subject-map", str(partial))
    assert code == 1, output
    failed = [line for line in output.splitlines() if line.startswith("FAILED")]
    assert failed and all("from an earlier extraction were removed" in line for line in failed)
    failed_runs = {re.findall(r"\(([0-9a-f]{32})\)", line)[0] for line in failed}
    # No row written under the old settings survives: the failed runs have none left.
    assert set(original_codes(database).values()) == {0}
    for table, rows in rows_by_table(database).items():
        assert not failed_runs & set(rows), table


def test_a_new_metric_point_re_extracts_exactly_that_run(demo: DemoStore, tmp_path: Path) -> None:
    database = tmp_path / "r.duckdb"
    assert extract(demo, database)[0] == 0
    changed = demo.good_run_ids[1]
    MlflowClient(demo.tracking_uri).log_metric(changed, "late_metric", 0.5, step=7)
    listed = status(demo, database)
    assert "1 to extract" in listed
    assert f"{changed}  stale: the run changed in MLflow" in listed
    code, output = extract(demo, database)
    assert code == 0, output
    assert summary_counts(output)["materialized"] == 1
    with duckdb.connect(str(database), read_only=True) as conn:
        points = conn.execute(
            "SELECT run_id, step FROM classification.metric_history WHERE key = 'late_metric'"
        ).fetchall()
    assert points == [(changed, 7)]


def test_a_kind_change_re_extracts_and_drops_the_old_kind_rows(
    demo: DemoStore, tmp_path: Path
) -> None:
    database = tmp_path / "r.duckdb"
    assert extract(demo, database)[0] == 0
    assert rows_by_table(database)["imputation.preprocessed_signals"]
    code, output = extract(demo, database, "--kind", "Imputation=generic")
    assert code == 0, output
    assert summary_counts(output)["materialized"] == len(demo.imputation_run_ids)
    assert "stale: kind changed" in output
    assert rows_by_table(database)["imputation.preprocessed_signals"] == {}
    assert set(rows_by_table(database)["imputation.runs"]) == set(demo.imputation_run_ids)


def test_sigint_stops_after_the_partition_in_flight_and_the_rerun_completes(
    tmp_path: Path,
) -> None:
    store = write_demo_store(tmp_path / "store", runs=24, bootstraps=20, n_test=30)
    reference_db = tmp_path / "reference.duckdb"
    assert extract(store, reference_db)[0] == 0
    reference = rows_by_table(reference_db)

    database = tmp_path / "r.duckdb"
    cmd = [sys.executable, "-m", "mlruns_assets.cli", "extract"]
    cmd += ["--tracking-uri", store.tracking_uri, "--db", str(database)]
    cmd += ["--heartbeat-seconds", "0"]
    proc = subprocess.Popen(
        cmd, env=clean_environ(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:  # the first committed partition, then the interrupt
        lines.append(line)
        if re.search(r"\] [1-9]\d*/\d+ ", line) or line.startswith("[progress] done"):
            break
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    rest, _ = proc.communicate(timeout=60)
    elapsed = time.monotonic() - sent
    output = "".join(lines) + rest
    assert proc.returncode == 130, output
    assert elapsed < 5, f"exited {elapsed:.1f} s after SIGINT"
    match = re.search(r"interrupted: (\d+) committed, (\d+) left; rerun to resume", output)
    assert match, output
    assert int(match[2]) > 0, "the interrupt should land before the last partition"

    code, again = extract(store, database)
    assert code == 0, again
    assert summary_counts(again)["materialized"] == int(match[2])
    assert rows_by_table(database) == reference  # every run exactly once, in every table


def test_ui_shows_partitions_stale_after_a_source_or_settings_change(
    demo: DemoStore, tmp_path: Path
) -> None:
    database, home = tmp_path / "r.duckdb", tmp_path / "home"
    mapped = Settings(demo.tracking_uri, str(database), subject_map=str(demo.subject_map_path))
    code, output = extract(
        demo, database, "--subject-map", str(demo.subject_map_path), "--dagster-home", str(home)
    )
    assert code == 0, output
    # A new metric point, then an observation of the runs' versions, as `extract` records it
    # when it starts (and the UI's "Observe" on the mlflow_runs source asset).
    changed = demo.good_run_ids[0]
    MlflowClient(demo.tracking_uri).log_metric(changed, "late_metric", 1.0)
    store = TrackingStore(demo.tracking_uri)
    (experiment,) = store.experiments(["Classification"])
    with open_instance(home) as instance:
        ordered = [key_of(instance, "classification_runs", r) for r in demo.good_run_ids]
        versions = {k: run_version(store.client.get_run(run_id_of(k))) for k in ordered}
        changed_key = ordered[0]
        # Each materialization points at the observation of the run it was extracted from.
        observed = instance.get_latest_storage_id_by_partition(
            source_asset_key(experiment), dg.DagsterEventType.ASSET_OBSERVATION
        )
        for record in instance.fetch_materializations(
            dg.AssetKey(["classification", "stratos"]), limit=100
        ).records:
            assert record.asset_materialization and record.partition_key
            tags = record.asset_materialization.tags or {}
            pointer = tags["dagster/input_event_pointer/classification/mlflow_runs"]
            assert pointer == str(observed[record.partition_key])
        assert report_changed_versions(instance, experiment, versions) == [changed_key]

    keys = ", ".join(f'"{k}"' for k in ordered)
    query = f"""{{ assetNodeOrError(assetKey: {{path: ["classification", "stratos"]}}) {{
        ... on AssetNode {{ staleStatusByPartition(partitions: [{keys}])
                           staleCausesByPartition(partitions: [{keys}]) {{ reason }} }} }} }}"""
    with running_webserver(mapped, home, tmp_path) as (port, _):
        node = graphql(port, query)["assetNodeOrError"]
    expected = ["STALE" if k == changed else "FRESH" for k in demo.good_run_ids]
    assert node["staleStatusByPartition"] == expected
    causes = node["staleCausesByPartition"][demo.good_run_ids.index(changed)]
    assert any("new data version" in c["reason"] for c in causes), causes

    # Other settings (no subject map): every partition's code version changed.
    unmapped = Settings(demo.tracking_uri, str(database))
    with running_webserver(unmapped, home, tmp_path) as (port, _):
        node = graphql(port, query)["assetNodeOrError"]
    assert node["staleStatusByPartition"] == ["STALE"] * len(demo.good_run_ids)
    assert all(
        any("code version" in c["reason"] for c in causes)
        for causes in node["staleCausesByPartition"]
    )


RUN_A_RANGE = """
import sys
from pathlib import Path
from mlruns_assets.defs.partitions import range_tags
from mlruns_assets.defs.project import build_definitions
from mlruns_assets.runtime.instance import open_instance
from mlruns_assets.runtime.settings import Settings

keys = sys.argv[2:]
defs = build_definitions(Settings.from_env())
with open_instance(Path(sys.argv[1])) as instance:
    instance.add_dynamic_partitions("classification_runs", keys)
    job = defs.resolve_job_def("classification_extraction_job")
    job.execute_in_process(instance=instance, tags=range_tags(keys), raise_on_error=False)
"""


def test_an_interrupted_dagster_run_keeps_what_it_committed(tmp_path: Path) -> None:
    """A Dagster run worker interrupted the way the UI's terminate does (SIGINT) in the middle
    of a range: the partitions that committed stay materialized with their rows, the one in
    flight has neither."""
    store = write_demo_store(tmp_path / "store", runs=3, bootstraps=20, n_test=30)
    hung = store.good_run_ids[-1]
    (artifact,) = (tmp_path / "store" / "artifacts").glob(
        f"*/{hung}/artifacts/metrics/metrics_*.pickle"
    )
    artifact.unlink()
    os.mkfifo(artifact)  # nobody writes: the last partition's read blocks
    database, home = tmp_path / "r.duckdb", tmp_path / "home"
    settings = Settings(store.tracking_uri, str(database), experiments=("Classification",))
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_A_RANGE, str(home), *store.good_run_ids],
        env=clean_environ(**settings.to_env()),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stratos = dg.AssetKey(["classification", "stratos"])
    committed = set(store.good_run_ids[:-1])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[0]
            with open_instance(home) as instance:
                if instance.get_materialized_partitions(stratos) >= committed:
                    break
            time.sleep(0.5)
        time.sleep(1)  # the worker is now blocked in the last partition's read
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:  # never leave the worker blocked on the FIFO
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    with open_instance(home) as instance:
        assert instance.get_materialized_partitions(stratos) == committed, output
        (run,) = instance.get_runs(limit=1)
        assert run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
    rows = rows_by_table(database)
    assert set(rows["classification.runs"]) == committed
    assert set(rows["classification.predictions"]) == committed


def test_a_resumed_run_extracts_only_what_the_failed_attempt_did_not_commit(
    demo: DemoStore, tmp_path: Path
) -> None:
    database = tmp_path / "r.duckdb"
    config = Settings(demo.tracking_uri, str(database), experiments=("Classification",))
    job = build_definitions(config).resolve_job_def("classification_extraction_job")
    ids = demo.good_run_ids

    def run(keys: list[str], resumes: str | None = None, root: str | None = None) -> set[str]:
        """The partitions a run of ``keys`` materializes; ``resumes``: tagged as Dagster tags
        a retry from failure of that run (of group ``root``)."""
        tags = range_tags(keys)
        if resumes:
            tags |= {"dagster/is_resume_retry": "true", "dagster/parent_run_id": resumes}
            tags["dagster/root_run_id"] = root or resumes
        result = job.execute_in_process(instance=instance, tags=tags)
        assert result.success
        runs.append(result.run_id)
        return {str(e.partition) for e in result.get_asset_materialization_events()}

    runs: list[str] = []
    with open_instance(tmp_path / "home") as instance:
        instance.add_dynamic_partitions("classification_runs", ids)
        assert run(ids[:1]) == {ids[0]}  # done before the attempt that "failed"
        attempt = ids[1:2]
        assert run(attempt) == {ids[1]}  # the failed attempt at ids, which committed ids[1]
        first = runs[-1]
        # Kept: what the attempt committed. Not kept: ids[0], done before it (the attempt was
        # asked to redo it) and ids[2], never done.
        assert run(ids, resumes=first) == {ids[0], ids[2]}
        # Rows gone from the database are never vouched for: the next resume extracts them.
        with duckdb.connect(str(database)) as conn:
            for (table,) in conn.execute(
                "SELECT table_name FROM information_schema.columns WHERE table_schema = "
                "'classification' AND column_name = 'run_id'"
            ).fetchall():
                conn.execute(f'DELETE FROM classification."{table}" WHERE run_id = ?', [ids[1]])
        assert run(ids, resumes=runs[-1], root=first) == {ids[1]}
        assert run(ids, resumes=runs[-1], root=first) == set()
        assert run(ids) == set(ids)  # re-executing everything: everything
    assert rows_by_table(database)["classification.runs"] == {run_id: 1 for run_id in ids}
