"""A push holding events already past the view's TTL: dropped by the store, counted, logged once per view."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pandas as pd
from feast import Field
from feast.types import String

from feast_sequence.online.expired_pushes import expired_count
from feast_sequence.serving import metrics

from repos import push_source, sequence_views, user

HOUR_US = 3600 * 10**6


def test_expired_count_counts_events_older_than_now_minus_ttl():
    now = 100 * HOUR_US
    assert expired_count([now, now - HOUR_US, now - HOUR_US - 1, 0], HOUR_US, now) == 2
    assert expired_count([now - 5 * HOUR_US], None, now) == 0  # no TTL: nothing expires
    assert expired_count([], HOUR_US, now) == 0


def _views(tmp_path):
    push = push_source("clicks", tmp_path, {"user_id": "int64", "item": "string"})
    hourly, forever = sequence_views(
        {"recent_clicks": {"ttl": timedelta(hours=1)}, "all_clicks": {}},
        entities=[user],
        source=push,
        schema=[Field(name="item", dtype=String)],
        max_length=5,
    )
    return [user, push, hourly, forever]


def _expired_total(view: str) -> float:
    return metrics.EXPIRED_PUSHED_EVENTS.labels(view)._value.get()


def test_a_push_of_expired_events_is_counted_and_logged_once_per_view(make_store, tmp_path, caplog):
    store = make_store(_views(tmp_path))
    now = datetime.now(timezone.utc)
    events = pd.DataFrame(
        {
            "user_id": [1, 1, 2],
            "item": ["old", "older", "fresh"],
            "ts": [now - timedelta(days=400), now - timedelta(hours=2), now - timedelta(minutes=1)],
        }
    )
    before = _expired_total("recent_clicks"), _expired_total("all_clicks")
    with caplog.at_level(logging.WARNING, logger="feast_sequence.online.expired_pushes"):
        store.push("clicks_push", events)
        store.push("clicks_push", events)
    after = _expired_total("recent_clicks"), _expired_total("all_clicks")
    assert (after[0] - before[0], after[1] - before[1]) == (4, 0)  # 2 per push; the view without TTL keeps all
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "'recent_clicks': 2 of 3 pushed events are older than its ttl (1:00:00)" in warnings[0]
    read = store.get_online_features(
        features=["recent_clicks:item", "all_clicks:item"],
        entity_rows=[{"user_id": 1}, {"user_id": 2}],
        full_feature_names=True,
    ).to_dict()
    assert read["recent_clicks__item"] == [[], ["fresh"]]
    assert read["all_clicks__item"] == [["older", "old"], ["fresh"]]
