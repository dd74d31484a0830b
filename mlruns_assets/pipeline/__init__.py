"""One partition end to end as plain functions: read a run, build its tables, commit them, report
outcomes. No Dagster.
"""
