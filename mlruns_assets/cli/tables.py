"""``mlruns-assets tables``: the reference of every table, as in the README."""

import click

from mlruns_assets.warehouse.catalog import all_tables
from mlruns_assets.warehouse.leaderboard import LEADERBOARD
from mlruns_assets.warehouse.tables import TableSpec, markdown_reference


def documented_tables() -> list[TableSpec]:
    """Every table a run's partitions fill, then those rebuilt from them (the leaderboard)."""
    return [*all_tables(), LEADERBOARD]


@click.command(
    "tables", epilog="Example: mlruns-assets tables > tables.md\n\nExit codes: 0 printed."
)
def tables_command() -> None:
    """Print every table this tool writes (columns, types, nullability) as Markdown."""
    click.echo(markdown_reference(documented_tables()), nl=False)
