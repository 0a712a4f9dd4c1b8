"""Training data with the timestamp type the online path serves: timezone-aware UTC.

Online, Feast serves a timestamp list as UTC datetimes with ``None`` for a null (or a padded slot).
An Arrow table converted by pandas loses both: a list of timestamps becomes a naive numpy
``datetime64[us]`` array with ``NaT``. So training frames are built here instead: timestamp
columns as ``datetime64[us, UTC]`` and timestamp lists as lists of UTC datetimes and ``None``, the
values ``OnlineResponse.to_dict()`` gives. A naive timestamp is taken as UTC (Feast's convention).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import List, Optional

import pandas as pd
import pyarrow as pa


def _utc(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(kind):
        return pa.timestamp(kind.unit, tz="UTC") if kind.tz is None else kind
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        item = _utc(kind.value_type)
        return pa.list_(item) if pa.types.is_list(kind) else pa.large_list(item)
    return kind


def utc_timestamps(table: pa.Table) -> pa.Table:
    """``table`` with every timestamp column, and every list of timestamps, timezone-aware (naive as UTC)."""
    schema = pa.schema([field.with_type(_utc(field.type)) for field in table.schema], metadata=table.schema.metadata)
    return table if schema.equals(table.schema) else table.cast(schema)


def _timestamp_lists(table: pa.Table) -> List[str]:
    """Lists of timestamps, and lists of nulls only (a timestamp column whose every slot is a pad
    is inferred as such)."""
    return [
        field.name
        for field in table.schema
        if (pa.types.is_list(field.type) or pa.types.is_large_list(field.type))
        and (pa.types.is_timestamp(field.type.value_type) or pa.types.is_null(field.type.value_type))
    ]


def _utc_datetime(value: Optional[datetime]) -> Optional[datetime]:
    return None if value is None else value.replace(tzinfo=timezone.utc)


def served_frame(table: pa.Table) -> pd.DataFrame:
    """``table`` as a DataFrame whose timestamps are as served online (see the module docstring)."""
    table = utc_timestamps(table)
    frame = table.to_pandas()
    for name in _timestamp_lists(table):
        # Arrow gives zoneinfo's UTC; Feast's client gives datetime.timezone.utc: the same instant,
        # and the same tzinfo object too, so that rows compare and print alike.
        cells = table.column(name).to_pylist()
        frame[name] = pd.Series(
            [
                None if cell is None else [t if t is None else t.replace(tzinfo=timezone.utc) for t in cell]
                for cell in cells
            ],
            index=frame.index,
            dtype=object,
        )
    return frame
