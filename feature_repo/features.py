"""Example repository on the Online Retail II events: customer purchase and return sequences."""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float32, Int32, String

from feast_sequence import SequenceFeatureView

customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING)

EVENT_FIELDS = [
    Field(name="invoice", dtype=String),
    Field(name="item_id", dtype=String),
    Field(name="quantity", dtype=Int32),
    Field(name="unit_price", dtype=Float32),
]

purchase_push = PushSource(
    name="purchase_push",
    batch_source=FileSource(
        name="purchases_source", path="data/purchases.parquet", timestamp_field="event_timestamp"
    ),
)
return_push = PushSource(
    name="return_push",
    batch_source=FileSource(
        name="returns_source", path="data/returns.parquet", timestamp_field="event_timestamp"
    ),
)

# The events are from 2009-2010, so these views keep no TTL: with one, today's reads would be empty.
customer_purchases = SequenceFeatureView(
    name="customer_purchases",
    entities=[customer],
    source=purchase_push,
    schema=EVENT_FIELDS,
    max_length=50,
    # One event per invoice line item; the source's exact duplicate lines collapse.
    dedup_by=["invoice", "item_id"],
)

customer_returns = SequenceFeatureView(
    name="customer_returns",
    entities=[customer],
    source=return_push,
    schema=EVENT_FIELDS,
    max_length=20,
    dedup_by=["invoice", "item_id"],
)

item_features = FeatureView(
    name="item",
    entities=[item],
    schema=[Field(name="description", dtype=String), Field(name="price", dtype=Float32)],
    source=FileSource(name="items_source", path="data/items.parquet", timestamp_field="event_timestamp"),
    ttl=timedelta(0),
)

customer_history = FeatureService(
    name="customer_history", features=[customer_purchases, customer_returns]
)
