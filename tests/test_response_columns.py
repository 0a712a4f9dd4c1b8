"""The use case's response built from whole columns, against the value-by-value way it replaced:
padding and masks on arrays (``padded_rows``, ``mask_rows``) against ``pad`` and ``mask`` per row,
and a feature's lists as wire bytes (``list_value_entries``) against protobuf's own ``extend``. Pure,
no Redis."""

from __future__ import annotations

from typing import Any, List

import numpy as np
from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse
from feast.type_map import NULL_TIMESTAMP_INT_VALUE
from feast.value_type import ValueType
from hypothesis import given, settings
from hypothesis import strategies as st

from feast_sequence.online.null_timestamps import encode_null_timestamps
from feast_sequence.serving.batch import NUMPY_DTYPE
from feast_sequence.serving.featurize import mask, mask_rows, pad, padded_rows
from feast_sequence.serving.response_values import BULK_FROM, list_value_entries, merge_entries, varints
from feast_sequence.storage.codec import NULL_DEFAULTS, list_field_name

rows_of_ints = st.lists(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=6), max_size=6)
ELEMENTS = {
    ValueType.INT64: st.integers(-(2**63), 2**63 - 1),
    ValueType.INT32: st.integers(-(2**31), 2**31 - 1),
    ValueType.UNIX_TIMESTAMP: st.one_of(st.integers(-(2**40), 2**40), st.just(NULL_TIMESTAMP_INT_VALUE)),
    ValueType.FLOAT: st.floats(width=32, allow_nan=False),
    ValueType.DOUBLE: st.floats(allow_nan=False),
    ValueType.BOOL: st.booleans(),
}


def _flat(rows: List[List[Any]], value_type: ValueType) -> tuple:
    values = np.array([v for row in rows for v in row], dtype=NUMPY_DTYPE[value_type])
    return values, np.array([len(row) for row in rows], dtype=np.int64)


@given(rows_of_ints, st.integers(0, 8), st.booleans())
def test_padded_rows_pad_each_row_as_pad_does(rows, extra, left):
    length = max([len(row) for row in rows], default=0) + extra
    values, lengths = _flat(rows, ValueType.INT64)
    padded = padded_rows(values, lengths, length, -1, left)
    assert padded.shape == (len(rows), length)
    assert padded.tolist() == [pad(row, length, -1, left) for row in rows]


def test_padded_rows_keep_strings_as_python_objects():
    values = np.array(["a", "b", "c"], dtype=object)
    padded = padded_rows(values, np.array([2, 0, 1]), 3, "", left=True)
    assert padded.tolist() == [["", "a", "b"], ["", "", ""], ["", "", "c"]]


@given(st.lists(st.integers(0, 6)), st.integers(6, 9), st.booleans())
def test_mask_rows_are_mask_per_row(counts, length, left):
    masks = mask_rows(np.array(counts, dtype=np.int64), length, left)
    assert masks.reshape(len(counts), length).tolist() == [mask(c, length, left) for c in counts]


@given(st.lists(st.integers(-(2**63), 2**63 - 1)))
def test_varints_are_protobufs(values):
    blob, widths = varints(np.array(values, dtype=np.int64))
    expected = GetOnlineFeaturesResponse.FeatureVector()
    expected.values.add().int64_list_val.val.extend(values)
    # a packed field's payload is the varints back to back
    assert blob in expected.SerializeToString()
    assert int(widths.sum()) == len(blob)


def _value_by_value(rows: List[List[Any]], value_type: ValueType, owner: List[int]) -> Any:
    """The response vector as the pipeline built it before: ``extend`` per row, nulls re-encoded."""
    response = GetOnlineFeaturesResponse()
    vector = response.results.add()
    for unique in owner:
        target = getattr(vector.values.add(), list_field_name(value_type))
        if rows[unique]:
            target.val.extend(rows[unique])
        else:
            target.SetInParent()
    encode_null_timestamps(response)
    return response


@settings(max_examples=200)
@given(st.data(), st.sampled_from(sorted(ELEMENTS, key=lambda t: t.name)), st.booleans())
def test_list_entries_parse_as_the_value_by_value_vector(data, value_type, final):
    rows = data.draw(st.lists(st.lists(ELEMENTS[value_type], max_size=5), max_size=5))
    owner = data.draw(st.lists(st.integers(0, len(rows) - 1), max_size=6)) if rows else []
    values, lengths = _flat(rows, value_type)
    entries = list_value_entries(values, lengths, value_type, nullable_timestamps=final, bulk_from=0)
    assert entries is not None
    response = GetOnlineFeaturesResponse()
    merge_entries(response.results.add(), entries, owner)
    if not final:  # the sentinel is left for encode_null_timestamps, as before
        encode_null_timestamps(response)
    if value_type == ValueType.FLOAT:  # what a float32 column holds
        rows = [[float(np.float32(v)) for v in row] for row in rows]
    assert response == _value_by_value(rows, value_type, owner)


def test_strings_and_bytes_have_no_bulk_encoding():
    for value_type in (ValueType.STRING, ValueType.BYTES):
        values = np.array([NULL_DEFAULTS[value_type]], dtype=object)
        assert list_value_entries(values, np.array([1]), value_type, True, bulk_from=0) is None


def test_small_columns_are_left_to_extend():
    values = np.arange(BULK_FROM - 1, dtype=np.int64)
    assert list_value_entries(values, np.array([len(values)]), ValueType.INT64, True) is None
    assert list_value_entries(np.append(values, 1), np.array([BULK_FROM]), ValueType.INT64, True) is not None
