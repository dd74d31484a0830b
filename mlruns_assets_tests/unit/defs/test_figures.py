"""The leaderboard and curves assets in Dagster: what their materializations carry, their checks,
and when their automation conditions ask for them (``defs/figures.py``, ``defs/leaderboard.py``,
``defs/curves.py``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from mlruns_assets.defs.curves import CURVES_METADATA_KEY, curves_key
from mlruns_assets.defs.figures import FIGURES_SENSOR, build_figures
from mlruns_assets.defs.leaderboard import leaderboard_key
from mlruns_assets.defs.partitions import partitions_def_name, run_partitions
from mlruns_assets.figures.curve_data import CURVES
from mlruns_assets.source.tracking import ExperimentRef
from mlruns_assets.warehouse.duckdb_writer import DuckDBWarehouse
from mlruns_assets_tests.support.stratos_db import SCHEMA, STANDARD_RUNS, database_with_runs

EXPERIMENT = ExperimentRef("1", "Classification", SCHEMA)
KEYS = [r.run_id for r in STANDARD_RUNS]


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        test_instance.add_dynamic_partitions(partitions_def_name(EXPERIMENT), KEYS)
        yield test_instance


@pytest.fixture
def warehouse(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(database=str(database_with_runs(tmp_path / "r.duckdb", STANDARD_RUNS)))


def _assets() -> dict[dg.AssetKey, dg.AssetsDefinition]:
    figures = build_figures([EXPERIMENT])
    assert [s.name for s in figures.sensors] == [FIGURES_SENSOR]
    return {a.key: a for a in figures.assets}


def test_one_sensor_running_unless_paused() -> None:
    [running] = build_figures([EXPERIMENT]).sensors
    [paused] = build_figures([EXPERIMENT], paused=True).sensors
    assert running.default_status == dg.DefaultSensorStatus.RUNNING
    assert paused.default_status == dg.DefaultSensorStatus.STOPPED
    assert build_figures([]).sensors == []  # no classification experiment, no sensor


def test_leaderboard_materialization_shows_the_table_and_passes_its_checks(
    instance: dg.DagsterInstance, warehouse: DuckDBWarehouse
) -> None:
    asset = _assets()[leaderboard_key(EXPERIMENT)]
    result = dg.materialize([asset], instance=instance, resources={"warehouse": warehouse})
    assert result.success
    metadata = result.asset_materializations_for_node(asset.node_def.name)[0].metadata
    table = metadata["leaderboard"].value
    assert isinstance(metadata["leaderboard"], dg.MarkdownMetadataValue)
    assert table.count("\n| ") == 2 + len(STANDARD_RUNS)  # header, rule, one line per run
    assert table.index("CATBOOST") < table.index("TabPFN") < table.index("XGBOOST")
    assert metadata["runs"].value == 4 and metadata["runs_not_passing"].value == 0
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "matches_declared_schema": True,
        "one_row_per_committed_run": True,
        "ranked_by_auroc": True,
        "auroc_within_its_ci": True,
    }


def test_curves_partition_carries_four_markdown_images_within_budget(
    instance: dg.DagsterInstance, warehouse: DuckDBWarehouse
) -> None:
    asset = _assets()[curves_key(EXPERIMENT)]
    result = dg.materialize(
        [asset], instance=instance, resources={"warehouse": warehouse}, partition_key="run_b"
    )
    assert result.success
    [event] = result.asset_materializations_for_node(asset.node_def.name)
    assert event.partition == "run_b"
    value = event.metadata[CURVES_METADATA_KEY]
    assert isinstance(value, dg.MarkdownMetadataValue)
    images = re.findall(r"!\[([^\]]+)\]\(data:image/png;base64,iVBORw0KGgo", str(value.value))
    assert images == [title for _, title in CURVES]
    size = sum(len(str(v.value)) for v in event.metadata.values())
    assert size < 150_000, size
    assert event.metadata["run_name"].value == STANDARD_RUNS[1].name


def test_curves_of_a_run_without_rows_fail_naming_it(
    instance: dg.DagsterInstance, warehouse: DuckDBWarehouse
) -> None:
    instance.add_dynamic_partitions(partitions_def_name(EXPERIMENT), ["never_extracted"])
    asset = _assets()[curves_key(EXPERIMENT)]
    result = dg.materialize(
        [asset],
        instance=instance,
        resources={"warehouse": warehouse},
        partition_key="never_extracted",
        raise_on_error=False,
    )
    assert not result.success
    assert not result.asset_materializations_for_node(asset.node_def.name)
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "never_extracted" in str(failure.step_failure_data.error)


STRATOS_SPEC = dg.AssetSpec([SCHEMA, "stratos"], partitions_def=run_partitions(EXPERIMENT))


def _automation_defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[STRATOS_SPEC, *_assets().values()],
        resources={"warehouse": DuckDBWarehouse(database=":memory:")},
    )


def _extracted(instance: dg.DagsterInstance, *keys: str) -> None:
    for key in keys:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=STRATOS_SPEC.key, partition=key)
        )


def test_automation_asks_for_nothing_before_the_first_extraction(
    instance: dg.DagsterInstance,
) -> None:
    defs = _automation_defs()
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.total_requested == 0
    _extracted(instance, KEYS[1])
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert second.get_num_requested(leaderboard_key(EXPERIMENT)) == 1
    assert second.get_requested_partitions(curves_key(EXPERIMENT)) == {KEYS[1]}


def test_automation_draws_what_was_extracted_before_and_after_it_first_looked(
    instance: dg.DagsterInstance,
) -> None:
    defs = _automation_defs()

    def extracted(*keys: str) -> None:
        _extracted(instance, *keys)

    # Three runs extracted headless before the daemon ever looked; run_d's extraction failed.
    extracted(*KEYS[:3])
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.get_num_requested(leaderboard_key(EXPERIMENT)) == 1  # despite run_d
    assert first.get_requested_partitions(curves_key(EXPERIMENT)) == set(KEYS[:3])
    # Handled: nothing new, nothing asked again.
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert second.total_requested == 0
    # run_a re-extracted, run_d extracted at last: both drawn, the leaderboard rebuilt.
    extracted(KEYS[0], KEYS[3])
    third = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=second.cursor)
    assert third.get_num_requested(leaderboard_key(EXPERIMENT)) == 1
    assert third.get_requested_partitions(curves_key(EXPERIMENT)) == {KEYS[0], KEYS[3]}
