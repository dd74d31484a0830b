"""``python -m mlruns_assets.cli``: the same as the ``mlruns-assets`` command."""

from mlruns_assets.cli.main import run

run()
