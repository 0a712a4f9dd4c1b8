"""Pure cores of "training output is shaped like serving output": timestamps and nulls as Python
(online and training frames), HTTP and the command line give them. The end-to-end comparison is in
tests/test_training_parity.py."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest
from feast.feature_server_utils import convert_response_to_dict
from feast.online_response import OnlineResponse
from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse
from feast.protos.feast.types.Value_pb2 import RepeatedValue
from feast.type_map import NULL_TIMESTAMP_INT_VALUE
from feast.value_type import ValueType

from feast_sequence.cli.entity_arguments import entity_rows
from feast_sequence.cli.online import to_json
from feast_sequence.errors import SequenceInputError
from feast_sequence.offline.served_types import served_frame, utc_timestamps
from feast_sequence.online.null_timestamps import encode_null_timestamps, nullable_list_bytes

T1, T2 = 1_700_000_000, 1_700_000_060


def _response(columns: dict) -> GetOnlineFeaturesResponse:
    """A response with one vector per column: (list field, rows)."""
    response = GetOnlineFeaturesResponse()
    for name, (field, rows) in columns.items():
        response.metadata.feature_names.val.append(name)
        vector = response.results.add()
        for row in rows:
            value = vector.values.add()
            if row is None:
                continue  # a null row: no value set
            getattr(value, field).val.extend(row)
            if not row:
                getattr(value, field).SetInParent()
    return response


def test_null_timestamps_are_null_over_http_and_none_in_python_as_before():
    padded = [T1, NULL_TIMESTAMP_INT_VALUE, NULL_TIMESTAMP_INT_VALUE]
    columns = {
        "ts": ("unix_timestamp_list_val", [None, [T2, T1], padded, []]),
        "n": ("int64_list_val", [[1, NULL_TIMESTAMP_INT_VALUE], [2], [3], []]),
    }
    before = OnlineResponse(_response(columns)).to_dict()
    response = _response(columns)
    encode_null_timestamps(response)
    assert OnlineResponse(response).to_dict() == before  # Python sees the same values
    utc = [datetime.fromtimestamp(t, tz=timezone.utc) for t in (T1, T2)]
    assert before["ts"] == [None, [utc[1], utc[0]], [utc[0], None, None], []]
    http = [r["values"] for r in convert_response_to_dict(response)["results"]]
    assert http[0] == [None, [T2, T1], [T1, None, None], []]
    assert http[1] == [[1, NULL_TIMESTAMP_INT_VALUE], [2], [3], []]  # only timestamps are touched
    # Lists without a null keep Feast's packed encoding.
    assert response.results[0].values[1].WhichOneof("val") == "unix_timestamp_list_val"
    assert response.results[0].values[2].WhichOneof("val") == "list_val"


@pytest.mark.parametrize("rows", [4, 200], ids=["value by value", "numpy"])
def test_every_row_of_a_large_or_small_vector_is_re_encoded_alike(rows):
    rng = np.random.default_rng(rows)
    lists = []
    for _ in range(rows):
        seconds = rng.integers(T1 - 10**8, T1 + 10**8, int(rng.integers(0, 6))).tolist()
        lists.append(seconds + [NULL_TIMESTAMP_INT_VALUE] * int(rng.integers(0, 3)))
    columns = {"ts": ("unix_timestamp_list_val", lists)}
    response = _response(columns)
    encode_null_timestamps(response)
    assert OnlineResponse(response).to_dict() == OnlineResponse(_response(columns)).to_dict()
    http = convert_response_to_dict(response)["results"][0]["values"]
    assert http == [[None if s == NULL_TIMESTAMP_INT_VALUE else s for s in row] for row in lists]


@pytest.mark.parametrize(
    "seconds",
    [
        [T1, NULL_TIMESTAMP_INT_VALUE, T2],  # 5-byte varints: the fixed-width path
        [NULL_TIMESTAMP_INT_VALUE] * 3,
        [
            0,
            1,
            127,
            128,
            2**28 - 1,
            2**35,
            -1,
            -(2**40),
            2**63 - 1,
            NULL_TIMESTAMP_INT_VALUE + 1,
            NULL_TIMESTAMP_INT_VALUE,
        ],
    ],
    ids=["modern", "all null", "edges"],
)
def test_nullable_list_bytes_parse_back_as_protobuf_reads_them(seconds):
    blob, widths = nullable_list_bytes(np.array(seconds, dtype=np.int64))
    parsed = RepeatedValue.FromString(blob).val
    assert [v.unix_timestamp_val if v.WhichOneof("val") else None for v in parsed] == [
        None if s == NULL_TIMESTAMP_INT_VALUE else s for s in seconds
    ]
    assert widths.sum() == len(blob)


def test_training_frames_have_utc_timestamps_as_served():
    naive = pa.array([[datetime(2024, 1, 1, 12), None], []], type=pa.list_(pa.timestamp("us")))
    table = pa.table({"ts": naive, "as_of": pa.array([datetime(2024, 1, 2)] * 2, type=pa.timestamp("us"))})
    assert utc_timestamps(table).schema.field("ts").type == pa.list_(pa.timestamp("us", tz="UTC"))
    frame = served_frame(table)
    assert str(frame["as_of"].dtype) == "datetime64[us, UTC]"
    first = frame["ts"][0]
    assert first == [datetime(2024, 1, 1, 12, tzinfo=timezone.utc), None] and first[0].tzinfo is timezone.utc
    assert frame["ts"][1] == []
    # A column of pads only is inferred as a list of nulls: still lists of None, as served.
    assert served_frame(pa.table({"ts": pa.array([[None, None]])}))["ts"][0] == [None, None]


def test_entity_arguments_take_their_join_key_types():
    types = {"user_id": ValueType.INT64, "item_id": ValueType.STRING, "flag": ValueType.BOOL}
    rows = entity_rows(["user_id=1", "item_id=07", "user_id=2", "item_id=a=b"], types)
    assert rows == [{"user_id": 1, "item_id": "07"}, {"user_id": 2, "item_id": "a=b"}]
    assert entity_rows(["flag=true", "other=x"], types) == [{"flag": True, "other": "x"}]
    with pytest.raises(SequenceInputError, match=r"user_id='1\.5'.*INT64"):
        entity_rows(["user_id=1.5"], types)
    with pytest.raises(SequenceInputError, match=r"'user_id': use key=value"):
        entity_rows(["user_id"], types)
    with pytest.raises(SequenceInputError, match=r"one value per row.*'user_id': 2, 'item_id': 1"):
        entity_rows(["user_id=1", "user_id=2", "item_id=a"], types)


def test_the_command_prints_timestamps_as_iso_text_and_nulls_as_null():
    ts = [datetime.fromtimestamp(T1, tz=timezone.utc), None]
    assert json.loads(to_json({"ts": [ts], "raw": [b"\x00"]})) == {
        "ts": [["2023-11-14T22:13:20+00:00", None]],
        "raw": ["AA=="],
    }
