"""Plain settings and process-level services every layer may use: the settings model, errors,
memory and disk guardrails, progress reporting and the persistent Dagster instance.
"""
