"""The real retail events, replayed shuffled and with duplicates, equal a pandas reference."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd

from feast_sequence import sequence_settings

from retail_reference import FIELDS, pandas_reference


def test_shuffled_replay_with_duplicates_equals_pandas(retail_store, retail_events):
    rng = np.random.default_rng(7)
    for view, source, events in (
        ("customer_purchases", "purchase_push", retail_events.purchases),
        ("customer_returns", "return_push", retail_events.returns),
    ):
        duplicates = events.sample(frac=0.05, random_state=1)
        replay = pd.concat([events, duplicates]).iloc[rng.permutation(len(events) + len(duplicates))]
        for start in range(0, len(replay), 25_000):
            retail_store.push(source, replay.iloc[start : start + 25_000])

        settings = sequence_settings(retail_store.get_feature_view(view))
        expected = pandas_reference(settings, events)
        customers = sorted(events["customer_id"].unique().tolist())
        served = {}
        for start in range(0, len(customers), 1000):
            chunk = customers[start : start + 1000]
            out = retail_store.get_online_features(
                features=[f"{view}:{f}" for f in FIELDS], entity_rows=[{"customer_id": c} for c in chunk]
            ).to_dict()
            for i, c in enumerate(chunk):
                served[c] = list(zip(*(out[f][i] for f in FIELDS)))

        mismatches = []
        for customer, group in expected.groupby("customer_id", sort=False):
            want = list(
                zip(
                    group["invoice"],
                    group["item_id"],
                    group["quantity"].astype(int),
                    group["unit_price"].astype(np.float32).astype(float),
                    [datetime.fromtimestamp(t.timestamp(), timezone.utc) for t in group["event_timestamp"]],
                )
            )
            got = [(i, s, q, float(np.float32(p)), t) for i, s, q, p, t in served[customer]]
            if got != want:
                mismatches.append(customer)
        assert not mismatches, f"{view}: {len(mismatches)} customers differ, e.g. {mismatches[:5]}"
        assert len(served) == events["customer_id"].nunique()
