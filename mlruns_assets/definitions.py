"""The Dagster code location (``dagster dev -m mlruns_assets.definitions``).

Configured through the environment (``mlruns-assets ui`` sets it): MLRUNS_ASSETS_TRACKING_URI,
MLRUNS_ASSETS_DB and optionally MLRUNS_ASSETS_EXPERIMENTS (``A,B`` or a JSON list, for names
with commas) and MLRUNS_ASSETS_KINDS (``Name=kind,...`` or a JSON object).
"""

import dagster as dg

from mlruns_assets.project import ProjectConfig, build_definitions

_config = ProjectConfig.from_env()
defs = build_definitions(_config) if _config else dg.Definitions()
