"""The oracle (tests/reference.py) encodes events from the written spec (docs/concepts.md) with code of
its own; here the store's codec and the oracle agree byte for byte, on every element type, with and
without dedup_by, so the property tests that use the oracle check the codec against the spec."""

from __future__ import annotations

import math

from every_type import FIELDS
from feast.value_type import ValueType

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.storage.codec import NULL_DEFAULTS, encode_columns, layout_for

from reference import stored_bytes

EVENTS = [
    {"s": "x", "b": b"\x00\xff", "i32": -1, "i64": 2**62, "f": 0.1, "d": -2.5, "ok": True, "when": 1_700_000_000},
    {"s": "ü€", "b": b"", "i32": 2**31 - 1, "i64": -(2**63), "f": math.nan, "d": math.inf, "ok": False, "when": 0},
    {"s": None, "b": None, "i32": None, "i64": None, "f": None, "d": None, "ok": None, "when": None},
    {"s": "y" * 200, "b": b"z" * 130, "i32": 0, "i64": 300, "f": -0.0, "d": 1e300, "ok": True, "when": -5},
]
TIMES_US = [1_700_000_000_000_000, 1_700_000_000_123_456, 0, 999_999]


def settings(dedup_by=()) -> SequenceSettings:
    return SequenceSettings("v", (("user_id", ValueType.INT64),), FIELDS, "ts", 10, tuple(dedup_by), None)


def test_the_oracle_encodes_events_as_the_codec_does():
    for dedup_by in ((), ("i64", "s"), ("ok",)):
        view = settings(dedup_by)
        columns = [[NULL_DEFAULTS[f.value_type] if e[f.name] is None else e[f.name] for e in EVENTS] for f in FIELDS]
        members, identities = encode_columns(layout_for(view), columns, TIMES_US)
        oracle = [stored_bytes(view, {**e, "timestamp_us": t}) for e, t in zip(EVENTS, TIMES_US)]
        assert [m for m, _ in oracle] == members, dedup_by
        assert [i for _, i in oracle] == (identities if dedup_by else members), dedup_by
