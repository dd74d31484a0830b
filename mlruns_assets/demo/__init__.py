"""The built-in demo: a realistic MLflow tracking store written through MLflow's own API."""
