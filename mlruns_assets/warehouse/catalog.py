"""The registry of experiment kinds: kind -> assets -> tables.

An asset holds tables that always change together, because one read of a run's artifacts fills
them and one transaction commits them. Grouped rather than one asset per table because each
asset costs two Dagster events per partition (planned, materialized) at ~20 ms each on SQLite
instance storage: eleven table assets made those events cost three times the extraction itself
(benchmarks/, issue 6).
"""

from __future__ import annotations

from dataclasses import dataclass

from mlruns_assets.runtime.settings import Kind
from mlruns_assets.warehouse.signals_schema import PREPROCESSED_SIGNALS
from mlruns_assets.warehouse.stratos_schema import STRATOS_TABLES
from mlruns_assets.warehouse.tables import METRIC_HISTORY, RUNS, TableSpec


@dataclass(frozen=True)
class TableAsset:
    """One asset of an experiment and the tables it holds."""

    name: str
    description: str
    tables: tuple[TableSpec, ...]


RUN_RECORD = TableAsset(
    "runs",
    "What MLflow recorded of each run: identity, status, params and tags (`runs`) and every "
    "logged metric value (`metric_history`).",
    (RUNS, METRIC_HISTORY),
)
STRATOS = TableAsset(
    "stratos",
    "The STRATOS performance tables of each run, computed from its metrics pickle: "
    + ", ".join(f"`{t.name}`" for t in STRATOS_TABLES)
    + ".",
    tuple(STRATOS_TABLES),
)
SIGNALS = TableAsset(
    "preprocessed_signals",
    "The imputed signal of every subject of each run, from its imputation pickle "
    "(`preprocessed_signals`).",
    (PREPROCESSED_SIGNALS,),
)

ASSETS_BY_KIND: dict[Kind, tuple[TableAsset, ...]] = {
    Kind.GENERIC: (RUN_RECORD,),
    Kind.CLASSIFICATION: (RUN_RECORD, STRATOS),
    Kind.IMPUTATION: (RUN_RECORD, SIGNALS),
}


def assets_for_kind(kind: Kind) -> list[TableAsset]:
    """The assets an experiment of this kind has, in order."""
    return list(ASSETS_BY_KIND[kind])


def tables_for_kind(kind: Kind) -> list[TableSpec]:
    """Every table an experiment of this kind fills, in the order of its assets."""
    return [table for asset in ASSETS_BY_KIND[kind] for table in asset.tables]


def asset_of_table(kind: Kind) -> dict[str, str]:
    """Table name -> name of the asset (of this kind) that holds it."""
    return {t.name: a.name for a in ASSETS_BY_KIND[kind] for t in a.tables}


def kind_of_tables(table_names: set[str]) -> Kind:
    """The kind an existing schema was written as: the one most of whose tables it holds (a
    schema with any STRATOS table is classification, so its missing tables are reported)."""
    return max(Kind, key=lambda k: len({t.name for t in tables_for_kind(k)} & table_names))


def all_tables() -> list[TableSpec]:
    """Every declared table, each once, in the order of the kinds."""
    seen: dict[str, TableSpec] = {}  # bounded: the declared tables
    for kind in Kind:
        for spec in tables_for_kind(kind):
            seen.setdefault(spec.name, spec)
    return list(seen.values())
