"""When the figures' automation sensor asks for the leaderboard and the curves.

Both react to STRATOS partitions materialized since they last ran, like ``eager()``. Two
departures, both measured with the real daemon:
- ``eager()`` would never draw runs extracted before the sensor first looked (``extract``
  headless, then ``mlruns-assets ui``): its "newly missing" resets on the first evaluation. So
  the first evaluation (a new instance, or a changed condition) also asks for what is missing.
- The leaderboard depends on every STRATOS partition: ``eager()`` would wait for all of them,
  and a failed run (a partition never materialized) would freeze it. It waits only for no
  extraction of the experiment to be in progress.
"""

import dagster as dg

_FIRST_LOOK = (
    dg.AutomationCondition.initial_evaluation() & dg.AutomationCondition.missing()
).with_label("missing when first evaluated")
# Nothing extracted yet: no leaderboard to build (the first extraction will ask for it).
_ANY_EXTRACTED = dg.AutomationCondition.any_deps_match(
    ~dg.AutomationCondition.missing()
).with_label("a STRATOS partition exists")
_UPDATED = (
    (dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated())
    .since_last_handled()
    .with_label("a STRATOS partition materialized since last handled")
)

LEADERBOARD_CONDITION = (
    (_UPDATED | (_FIRST_LOOK & _ANY_EXTRACTED))
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after each extraction")

CURVES_CONDITION = (
    (_UPDATED | _FIRST_LOOK)
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after the run's extraction")
