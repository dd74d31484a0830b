"""Reading the MLflow tracking store (never writing it): experiments, runs, metric histories,
artifacts loaded with the allow-list unpickler, and the discovery plan of which runs are
partitions.
"""
