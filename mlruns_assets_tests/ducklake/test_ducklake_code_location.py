"""The code location the UI loads, configured through the environment as ``mlruns-assets ui
--warehouse ...`` sets it (``MLRUNS_ASSETS_WAREHOUSE``): its extraction job writes to the DuckLake
catalog."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from mlruns_assets.demo.store import DemoStore
from mlruns_assets.runtime.settings import ENV_PREFIX, Settings
from mlruns_assets.warehouse.duckdb_writer import DuckDBWarehouse

pytestmark = pytest.mark.ducklake


def test_the_ui_code_location_extracts_into_the_warehouse_it_is_given(
    demo: DemoStore, new_warehouse: Callable[[], str], tmp_path: Path
) -> None:
    warehouse = new_warehouse()
    settings = Settings(
        tracking_uri=demo.tracking_uri,
        database="",
        warehouse=warehouse,
        subject_map=str(demo.subject_map_path),
        experiments=(demo.classification_experiment,),
    )
    env = settings.to_env()
    assert env["MLRUNS_ASSETS_WAREHOUSE"] == warehouse
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
            mp.delenv(key)
        for key, value in env.items():
            mp.setenv(key, value)
        sys.modules.pop("mlruns_assets.definitions", None)
        try:
            defs = importlib.import_module("mlruns_assets.definitions").defs
            keys = demo.good_run_ids[:2]
            with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
                instance.add_dynamic_partitions("classification_runs", keys)
                job = defs.resolve_job_def("classification_extraction_job")
                result = job.execute_in_process(
                    instance=instance,
                    tags={
                        "dagster/asset_partition_range_start": keys[0],
                        "dagster/asset_partition_range_end": keys[1],
                    },
                )
                assert result.success
        finally:
            sys.modules.pop("mlruns_assets.definitions", None)
    lake = DuckDBWarehouse(database="", warehouse=warehouse)
    with lake.get_connection(read_only=True) as conn:
        rows = conn.execute("SELECT run_id FROM classification.runs ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == sorted(keys)
