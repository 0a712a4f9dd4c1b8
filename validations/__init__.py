"""Data validation with Great Expectations 1.x (``feast_sequence.validations``): one suite per dataset.

- ``event_source``: a view's raw events (pandas or Spark), before they are indexed;
- ``sequences``: indexed sequences read back from Redis;
- ``training``: a training set from ``get_historical_features``;
- ``consistency_summary``: the online/offline consistency job's per-view results (``feast-sequence consistency``).

Run them with ``feast-sequence validate ...`` (non-zero exit on failure) or from the backfill and
correction jobs (``--validate``). Feast's own profiler needs GE < 1; these suites use GE 1.x directly.
See docs/validation.md.
"""
