"""The Online Retail II event log (CC BY 4.0, Chen 2019) turned into the example repository's events.

See ``data/online-retail-ii/README.md`` for the attribution and every change made to the source.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

RAW_FILE = Path("data/online-retail-ii/online_retail_ii_2009-2010.parquet")
EVENT_COLUMNS = ["customer_id", "invoice", "item_id", "quantity", "unit_price", "event_timestamp"]


@dataclass(frozen=True)
class RetailEvents:
    purchases: pd.DataFrame
    returns: pd.DataFrame
    items: pd.DataFrame


def load_events(raw_file: Path = RAW_FILE) -> RetailEvents:
    raw = pd.read_parquet(raw_file)
    known = raw[raw["Customer ID"].notna()]
    events = pd.DataFrame(
        {
            "customer_id": known["Customer ID"].astype("int64"),
            "invoice": known["Invoice"].astype(str),
            "item_id": known["StockCode"].astype(str),
            "quantity": known["Quantity"].astype("int32"),
            "unit_price": known["Price"].astype("float32"),
            # Shop-local time to the minute, no zone in the source: taken as UTC.
            "event_timestamp": pd.to_datetime(known["InvoiceDate"]).dt.tz_localize("UTC").dt.as_unit("us"),
        }
    ).reset_index(drop=True)
    is_return = events["invoice"].str.startswith("C")
    items = (
        raw.assign(event_timestamp=pd.to_datetime(raw["InvoiceDate"]).dt.tz_localize("UTC").dt.as_unit("us"))
        .sort_values("event_timestamp", kind="stable")
        .groupby("StockCode", as_index=False)
        .last()
    )
    items = pd.DataFrame(
        {
            "item_id": items["StockCode"].astype(str),
            "description": items["Description"].fillna("").astype(str),
            "price": items["Price"].astype("float32"),
            "event_timestamp": items["event_timestamp"],
        }
    )
    return RetailEvents(
        purchases=events[~is_return].reset_index(drop=True),
        returns=events[is_return].reset_index(drop=True),
        items=items,
    )


def write_repo_data(events: RetailEvents, data_dir: Path) -> None:
    """Write the batch sources of the example repository: one parquet folder per source
    (``feature_repo/data/purchases/`` ...), which Spark reads and pushes append to."""
    for name, frame in (
        ("purchases", events.purchases),
        ("returns", events.returns),
        ("items", events.items),
    ):
        folder = data_dir / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        # Microsecond timestamps: Spark cannot read parquet nanosecond timestamps.
        frame.to_parquet(folder / "part-00000.parquet", index=False, coerce_timestamps="us")
