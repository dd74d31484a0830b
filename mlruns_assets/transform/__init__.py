"""From loaded artifacts to Arrow tables: STRATOS measures, signals, run names, subject re-
anonymization. Plain functions, no I/O.
"""
