"""The retail events' expected sequences computed with pandas: per customer, the newest
max_length events after dedup, from the events as the store encodes them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from feast_sequence.storage.append import encode_frame

FIELDS = ["invoice", "item_id", "quantity", "unit_price", "event_timestamp"]


def pandas_reference(settings, events: pd.DataFrame) -> pd.DataFrame:
    """Newest max_length events per customer after dedup: keep the latest per identity, ties by bytes."""
    encoded = encode_frame(settings, events)
    frame = pd.DataFrame(
        {
            "customer_id": events["customer_id"].to_numpy(),
            "ts": encoded.scores_us,
            "identity": encoded.identities if encoded.identities is not None else encoded.members,
            "payload": encoded.members,
            "row": np.arange(len(events)),
        }
    )
    frame = frame.sort_values(["customer_id", "identity", "ts", "payload"], ascending=False, kind="stable")
    frame = frame.drop_duplicates(["customer_id", "identity"], keep="first")
    frame = frame.sort_values(["customer_id", "ts", "identity"], ascending=False, kind="stable")
    frame = frame.groupby("customer_id", sort=False).head(settings.max_length)
    return events.iloc[frame["row"].to_numpy()].assign(customer_id=frame["customer_id"].to_numpy())
