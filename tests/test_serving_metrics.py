"""The serving metrics' bulk histogram update counts exactly as one ``observe`` per value."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from feast_sequence.serving.metrics import observe_all


def _samples(histogram: Histogram) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in histogram.collect() for s in m.samples}


def test_observe_all_equals_one_observe_per_value():
    values = np.array([0, 1, 1.5, 2, 5, 5, 99, 100, 101, 1e6, 0.5])
    buckets = (0, 1, 2, 5, 100, 10000)
    one_by_one = Histogram("one_by_one", "x", ["v"], buckets=buckets, registry=CollectorRegistry())
    bulk = Histogram("bulk", "x", ["v"], buckets=buckets, registry=CollectorRegistry())
    for value in values.tolist():
        one_by_one.labels("a").observe(value)
    observe_all(bulk.labels("a"), values)
    observe_all(bulk.labels("a"), values[:0])  # nothing to observe: nothing changes
    got = {(n.replace("bulk", "one_by_one"), labels): v for (n, labels), v in _samples(bulk).items()}
    want = {key: v for key, v in _samples(one_by_one).items() if not key[0].endswith("_created")}
    assert {k: v for k, v in got.items() if not k[0].endswith("_created")} == want
    assert want[("one_by_one_count", (("v", "a"),))] == len(values)
