"""The Dagster code location (``dagster dev -m mlruns_assets.definitions``).

Configured through the environment (``mlruns-assets ui`` sets it): MLRUNS_ASSETS_TRACKING_URI,
MLRUNS_ASSETS_DB and optionally MLRUNS_ASSETS_EXPERIMENTS (comma-separated names).
"""

import dagster as dg

from mlruns_assets.project import ProjectConfig, build_definitions

_config = ProjectConfig.from_env()
defs = build_definitions(_config) if _config else dg.Definitions()
