"""Example repository on the Online Retail II events: customer purchase and return sequences."""

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, PushSource, ValueType
from feast.feature_logging import LoggingConfig
from feast.infra.offline_stores.file_source import FileLoggingDestination
from feast.on_demand_feature_view import on_demand_feature_view
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.types import Float32, Float64, Int32, Int64, String

from feast_sequence import Limits, SequenceFeatureView, SequenceSpec, SequenceUseCase, Where, enrich

# Feast writes logs where the path says, relative to the working directory: anchor them here.
LOGS = Path(__file__).resolve().parent / "data" / "logs"


def parquet_source(name: str) -> SparkSource:
    # A folder of parquet files (pushes with PushMode.ONLINE_AND_OFFLINE add files to it); relative
    # paths resolve against this repository's folder (docs/quickstart.md, "Your own repository on Spark").
    return SparkSource(
        name=f"{name}_source", path=f"data/{name}", file_format="parquet", timestamp_field="event_timestamp"
    )


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
    batch_source=parquet_source("purchases"),
)
return_push = PushSource(
    name="return_push",
    batch_source=parquet_source("returns"),
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
    schema=[
        Field(name="item_id", dtype=String),
        Field(name="description", dtype=String),
        Field(name="price", dtype=Float32),
    ],
    source=parquet_source("items"),
    ttl=timedelta(0),
)

customer_history = FeatureService(name="customer_history", features=[customer_purchases, customer_returns])


@on_demand_feature_view(
    sources=[customer_purchases[["quantity", "unit_price"]]],
    schema=[Field(name="purchase_lines", dtype=Int64), Field(name="purchase_value", dtype=Float64)],
    mode="python",
)
def purchase_summary(inputs: dict) -> dict:
    """Per-request features over a whole sequence: how many lines it holds and what they are worth."""
    return {
        "purchase_lines": [len(quantities) for quantities in inputs["quantity"]],
        "purchase_value": [
            float(sum(q * p for q, p in zip(quantities, prices)))
            for quantities, prices in zip(inputs["quantity"], inputs["unit_price"])
        ],
    }


# Use cases: two teams read the same purchase and return sequences, each shaped its own way.
purchase_ranking = SequenceUseCase(
    name="purchase_ranking",
    features=[
        customer_purchases[["item_id", "quantity", "unit_price", "event_timestamp"]],
        customer_returns[["item_id"]],
    ],
    sequences={
        # Real purchases only (the source also records adjustments), with the item's catalogue entry.
        "customer_purchases": SequenceSpec(
            length=10,
            where=[Where("quantity", ">", 0)],
            enrich=[enrich(item_features, on="item_id", features=["description", "price"], prefix="item_")],
        ),
        "customer_returns": SequenceSpec(length=5),
    },
    output="padded",
    limits=Limits(max_entities=500, time_budget_ms=2000),
    # Every response is logged (parquet under data/logs/): `feast-sequence consistency` compares
    # them with training data, and models can train on them (docs/monitoring.md).
    logging_config=LoggingConfig(destination=FileLoggingDestination(path=str(LOGS / "purchase_ranking"))),
)

return_alerts = SequenceUseCase(
    name="return_alerts",
    features=[customer_returns[["item_id", "quantity", "event_timestamp"]]],
    sequences={"customer_returns": SequenceSpec(length=3)},
    output="jagged",
    limits=Limits(max_entities=100),
)
