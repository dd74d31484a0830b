"""The kind registry: every kind's assets and tables, and the kind of an existing schema."""

from __future__ import annotations

from mlruns_assets.runtime.settings import Kind
from mlruns_assets.warehouse.catalog import (
    all_tables,
    asset_of_table,
    assets_for_kind,
    kind_of_tables,
    tables_for_kind,
)


def test_every_kind_has_the_run_record_first_and_each_table_once() -> None:
    for kind in Kind:
        assets = assets_for_kind(kind)
        assert assets[0].name == "runs"
        names = [t.name for t in tables_for_kind(kind)]
        assert len(names) == len(set(names))
        assert set(asset_of_table(kind)) == set(names)
    assert [a.name for a in assets_for_kind(Kind.CLASSIFICATION)] == ["runs", "stratos"]
    assert [a.name for a in assets_for_kind(Kind.IMPUTATION)] == ["runs", "preprocessed_signals"]
    assert len(all_tables()) == len({t.name for t in all_tables()}) == 12


def test_kind_of_an_existing_schema_from_its_tables() -> None:
    assert kind_of_tables({"runs", "metric_history"}) is Kind.GENERIC
    assert kind_of_tables({"runs", "preprocessed_signals"}) is Kind.IMPUTATION
    # Any STRATOS table makes it classification, so the missing ones are reported by the checks.
    assert kind_of_tables({"runs", "metric_history", "essential_metrics"}) is Kind.CLASSIFICATION
    assert kind_of_tables(set()) is Kind.GENERIC
