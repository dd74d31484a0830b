"""Dagster only, and thin: assets, checks, sensors, partitions, resources and jobs over the plain
functions below.
"""
