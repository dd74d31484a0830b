"""Where the rows go: every table declared once, the experiment kinds and the tables they fill, the
DuckDB writer (one transaction per partition) and the validation SQL.
"""
