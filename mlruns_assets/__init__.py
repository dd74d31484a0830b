"""mlruns_assets: MLflow experiments as a DuckDB results database (STRATOS tables), built by
Dagster with one partition per MLflow run.

Packages import only downward (declared in pyproject.toml, checked by import-linter in CI):
``cli`` > ``defs`` > ``pipeline`` > ``transform`` > ``source`` | ``warehouse`` > ``runtime``;
``demo`` and ``devtools`` stand apart.
"""
