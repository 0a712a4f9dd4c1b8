"""Entity key bytes: the canonical bytes of an entity's join key values, in every key of its sequence.

Each part is a type letter, a varint length and the value's text or bytes, parts sorted by join key
name; the bytes always start with a type letter, never ``}``, so they can sit inside a Redis hash
tag (docs/storage-layout.md). Pure logic, no I/O.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np
import pandas as pd
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType

from feast_sequence.definitions.element_types import KEY_TYPES
from feast_sequence.errors import SequenceInputError
from feast_sequence.storage.codec import varint
from feast_sequence.storage.conversion import bad_row, column_values

# Type letter of each join key type in entity key bytes.
_KEY_TYPE_PREFIX: Dict[ValueType, bytes] = {t: e.key_prefix or b"" for t, e in KEY_TYPES.items()}


def _entity_value_bytes(value_type: ValueType, value: Any) -> bytes:
    if value_type in (ValueType.INT32, ValueType.INT64):
        raw = str(int(value)).encode()
    elif value_type == ValueType.STRING:
        raw = value.encode("utf-8")
    else:
        raw = bytes(value)
    return _KEY_TYPE_PREFIX[value_type] + varint(len(raw)) + raw


def entity_key_bytes(pairs: Sequence[Tuple[str, ValueType, Any]]) -> bytes:
    """Canonical bytes of an entity key given (join key, type, value), whatever order they come in.

    Always starts with a type letter, never ``}``, so it can sit inside a Redis hash tag.
    """
    return b"".join(_entity_value_bytes(t, v) for _, t, v in sorted(pairs, key=lambda p: p[0]))


_PROTO_KEY_FIELDS: Dict[str, ValueType] = {e.value_field: t for t, e in KEY_TYPES.items()}


def entity_key_bytes_from_values(row: Mapping[str, ValueProto]) -> bytes:
    """Entity key bytes from Feast's per-row ``{join key: ValueProto}`` (the read path)."""
    parts = []
    for name in sorted(row):
        value = row[name]
        kind = value.WhichOneof("val")
        value_type = _PROTO_KEY_FIELDS.get(kind)  # type: ignore[arg-type]
        if value_type is None:
            raise SequenceInputError(
                f"Entity key {name!r} has a {kind or 'null'} value; sequence views support "
                "int32, int64, string and bytes join keys."
            )
        parts.append(_entity_value_bytes(value_type, getattr(value, kind)))  # type: ignore[arg-type]
    return b"".join(parts)


def entity_key_bytes_from_proto(key: EntityKeyProto) -> bytes:
    return entity_key_bytes_from_values(dict(zip(key.join_keys, key.entity_values)))


def entity_column_bytes(join_keys: Sequence[Tuple[str, ValueType]], df: pd.DataFrame) -> List[bytes]:
    """Canonical entity key bytes per row of ``df``."""
    columns = []
    for name, value_type in sorted(join_keys):
        if value_type not in _KEY_TYPE_PREFIX:
            raise SequenceInputError(
                f"Join key {name!r} has type {value_type.name}; sequence views support int32, "
                "int64, string and bytes join keys."
            )
        series = df[name]
        nulls = np.flatnonzero(series.isna().to_numpy())
        if len(nulls):
            raise bad_row(name, series, int(nulls[0]), "is null (entity keys cannot be null)")
        if value_type in (ValueType.INT32, ValueType.INT64):
            _refuse_float_keys(name, value_type, series)
        values = column_values(name, value_type, series)
        prefix = _KEY_TYPE_PREFIX[value_type]
        if value_type in (ValueType.INT32, ValueType.INT64):
            raws = [str(v).encode() for v in values]
        elif value_type == ValueType.STRING:
            raws = [v.encode("utf-8") for v in values]
        else:
            raws = values
        columns.append([prefix + varint(len(r)) + r for r in raws])
    if len(columns) == 1:
        return columns[0]
    return [b"".join(parts) for parts in zip(*columns)]


def _refuse_float_keys(name: str, value_type: ValueType, series: pd.Series) -> None:
    """An integer join key takes integers only, as reads do (online/entity_rows.py): a float key such
    as 1.0 would be stored under entity 1 while a read of 1.0 is refused."""
    kind = series.dtype.kind
    if kind == "f":
        position = 0
    elif kind == "O":
        floats = [i for i, v in enumerate(series.to_numpy()) if isinstance(v, (float, np.floating))]
        if not floats:
            return
        position = floats[0]
    else:
        return
    raise bad_row(
        name,
        series,
        position,
        f"is a float; join key {name!r} is {value_type.name} and takes integers only (reads refuse float "
        "keys), so convert the column to int",
    )
