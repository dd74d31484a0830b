"""The Dagster code location (``dagster dev -m mlruns_assets.definitions``; ``mlruns-assets ui``
starts it configured).

Configured through the environment (``MLRUNS_ASSETS_TRACKING_URI``, ``MLRUNS_ASSETS_DB`` and the
other options of ``runtime.settings.Settings``). Loading it lists the tracking store's
experiments once (their names make the asset keys); a store that cannot be listed or a missing
setting fails the load with one line naming it, so the UI shows why instead of an empty
location.
"""

import os
import warnings

from mlruns_assets.defs.project import build_definitions
from mlruns_assets.runtime.settings import Settings, env_name


def _load() -> object:
    warnings.filterwarnings("ignore", message=r".* is currently in beta")  # see cli.main
    settings = Settings.from_env(os.environ)
    if settings is None:
        raise RuntimeError(
            f"mlruns_assets: set {env_name('tracking_uri')} and {env_name('database')} (or start "
            "the UI with `mlruns-assets ui --tracking-uri ... --db ...`)"
        )
    return build_definitions(settings, from_environment=True)


defs = _load()
