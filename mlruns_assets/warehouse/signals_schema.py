"""Declaration of the ``preprocessed_signals`` table (see ``tables.py`` for how declarations are
used)."""

from __future__ import annotations

import pyarrow as pa

from mlruns_assets.warehouse.tables import TableSpec

# Variable-length DOUBLE[], not DOUBLE[T]. One declaration serves every partition: the column is
# created once per experiment schema (CREATE TABLE IF NOT EXISTS) and the schema check compares
# it with the declaration exactly. A DOUBLE[1981] column would reject the first run with another
# signal length, and the declaration cannot know T before a run is read, so a fixed size per
# partition would need one table per length. Within a split every row has the same length by
# construction (2-D arrays, checked against each other in signals.py); ``len(signal)`` queries it.
# (No SQL row rule on the lengths: the experiment-wide checks would read every signal.)
DOUBLES = pa.list_(pa.float64())
_STR = pa.string()

PREPROCESSED_SIGNALS = TableSpec(
    "preprocessed_signals",
    pa.schema(
        [
            pa.field("run_id", _STR, nullable=False),
            pa.field("imputation_method", _STR),
            pa.field("outlier_method", _STR),
            pa.field("split", _STR, nullable=False),
            pa.field("subject_code", _STR, nullable=False),
            pa.field("time_vector", DOUBLES, nullable=False),
            pa.field("signal", DOUBLES, nullable=False),
        ]
    ),
    "One row per subject of an imputation run: the imputed signal (the model's mean) and its "
    "time vector, as DOUBLE arrays. Subject codes are re-anonymized when a subject map is set; "
    "methods come from the run's params or its name and are NULL when neither says.",
)
