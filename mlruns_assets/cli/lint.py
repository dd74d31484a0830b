"""``mlruns-assets lint``: the accumulation lint over files or folders."""

from pathlib import Path

import click

from mlruns_assets.devtools.accumulation_lint import main as lint_main


@click.command(
    "lint",
    epilog="Example: mlruns-assets lint mlruns_assets\n\nExit codes: 0 clean, 1 findings.",
)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def lint_command(paths: tuple[Path, ...]) -> int:
    """Report containers that grow inside loops and are written after them (the pattern that
    swapped for 21 hours), unless marked '# bounded: <why>'."""
    return lint_main([str(p) for p in paths])
