"""A small repository on the Online Retail II events (CC BY 4.0, Chen 2019) whose use cases log what
they serve: purchases enriched with the item catalogue at index time, and a ranking use case enriched
at serving time, as feature_repo/ has it. Spark offline store (SparkSource parquet folders)."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any, List, Tuple

import pandas as pd
from feast.data_source import PushMode
from feast.feature_logging import LoggingConfig
from feast.infra.offline_stores.file_source import FileLoggingDestination

from feast_sequence import SequenceFeatureView, SequenceSpec, SequenceUseCase, Where, enrich

from repos import applied_store, sequence_online, spark_offline

CUSTOMERS = 12
#: The example repository: this one reuses its definitions; its sources' relative paths (data/...)
#: resolve against whichever repository applies them.
EXAMPLE = Path(__file__).resolve().parents[1] / "feature_repo" / "features.py"


def log_config(data_dir: Path, name: str) -> LoggingConfig:
    return LoggingConfig(destination=FileLoggingDestination(path=str(data_dir / "logs" / name)), sample_rate=1.0)


def objects(data_dir: Path, ranking_length: int = 10, max_length: int = 50) -> List:
    example = runpy.run_path(str(EXAMPLE))  # its entities, catalogue view, purchase source and fields
    customer, item, items = example["customer"], example["item"], example["item_features"]
    catalogue = enrich(items, on="item_id", features=["description"], prefix="item_")
    purchases = SequenceFeatureView(
        name="purchases",
        entities=[customer],
        source=example["purchase_push"],
        schema=example["EVENT_FIELDS"],
        max_length=max_length,
        dedup_by=["invoice", "item_id"],
        enrich=[catalogue],  # index time: the description as of each purchase
    )
    purchase_history = SequenceUseCase(
        name="purchase_history",
        features=[purchases[["invoice", "item_id", "quantity", "event_timestamp"]]],
        sequences={"purchases": SequenceSpec(enrich=[catalogue])},
        logging_config=log_config(data_dir, "purchase_history"),
    )
    ranking = SequenceUseCase(
        name="purchase_ranking",
        features=[purchases[["item_id", "quantity", "event_timestamp"]]],
        sequences={
            "purchases": SequenceSpec(
                length=ranking_length,
                where=[Where("quantity", ">", 0)],
                enrich=[enrich(items, on="item_id", features=["price"], prefix="catalogue_")],
            )
        },
        output="padded",
        logging_config=log_config(data_dir, "purchase_ranking"),
    )
    return [customer, item, items, purchases, purchase_history, ranking]


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False, coerce_timestamps="us")  # Spark reads microseconds only


def build(root: Path, events: Any, connection: str, spark: Any = None) -> Tuple[Any, Path, List[int], Any, Any]:
    """The repository at ``root`` on ``CUSTOMERS`` customers with 5-25 purchase lines each (all kept:
    max_length 50), applied, the catalogue written online and the purchases pushed online (the batch
    source already has them). Returns the store, the data folder, customers, purchases, items."""
    data = root / "data"
    purchases = events.purchases
    lines = purchases.drop_duplicates(["customer_id", "invoice", "item_id"]).groupby("customer_id").size()
    customers = lines[(lines >= 5) & (lines <= 25)].index[:CUSTOMERS].tolist()
    purchases = purchases[purchases["customer_id"].isin(customers)].reset_index(drop=True)
    items = events.items[events.items["item_id"].isin(purchases["item_id"])].reset_index(drop=True)
    # The example dates each catalogue entry by its item's last sale, after most purchases: offline,
    # an index-time enrichment as of a purchase would find no entry while the push found one (the
    # consistency report shows exactly that). Here the catalogue is dated before the first purchase.
    items["event_timestamp"] = pd.Timestamp("2009-01-01", tz="UTC")
    write_parquet(data / "purchases" / "part-0.parquet", purchases)
    write_parquet(data / "items" / "part-0.parquet", items)
    online = sequence_online(connection)
    store = applied_store(root, "retail_logged", online, objects(data), offline=spark or spark_offline())
    store.write_to_online_store("item", items)
    store.push("purchase_push", purchases, to=PushMode.ONLINE)
    return store, data, customers, purchases, items
