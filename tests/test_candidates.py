"""Candidate rows (``Where(field, op, FromRequest(column))``): each entity row gets the newest events
like its candidate, served as a naive reference computes them, and refused with the row named."""

from __future__ import annotations

import itertools

import candidates_repo
import numpy as np
import pandas as pd
import pytest
from candidates_repo import CATEGORIES, expected, purchases
from feast.data_source import PushMode
from feast.value_type import ValueType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feast_sequence import (
    FromRequest,
    SequenceDefinitionError,
    SequenceRequestError,
    SequenceSpec,
    SequenceUseCase,
    Where,
    feast_internals,
)
from feast_sequence.serving.batch import SequenceBatch, as_array
from feast_sequence.serving.candidates import select_per_row

from repos import applied_store, click_view, sequence_online

NOW = pd.Timestamp.now(tz="UTC").floor("s")


# --- the pure core: one selection per row, against a per-row loop ----------------------------------

histories = st.lists(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=30), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(histories, st.data(), st.one_of(st.none(), st.integers(1, 8)), st.booleans())
def test_select_per_row_equals_a_loop_per_row(rows, data, length, as_list):
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    flat = [v for r in rows for v in r]
    batch = SequenceBatch(lengths, {"kind": as_array(flat, ValueType.STRING)}, {"kind": ValueType.STRING})
    batch = batch.with_column("pos", np.arange(len(flat)), ValueType.INT64)
    owner = data.draw(st.lists(st.integers(0, len(rows) - 1), max_size=12))
    values = st.sampled_from(["a", "b", "c", "d", "zz"])
    asked = [data.draw(st.lists(values, max_size=3) if as_list else values) for _ in owner]
    condition = Where("kind", "in" if as_list else "==", FromRequest("x"))
    got = select_per_row(batch, condition, np.asarray(owner, dtype=np.int64), asked, length)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for out, (row, value) in enumerate(zip(owner, asked)):
        accepted = set(value) if as_list else {value}
        want = [offsets[row] + k for k, v in enumerate(rows[row]) if v in accepted][:length]
        assert got.row_lists("pos")[out] == want
    assert got.rows == len(owner)


def test_select_per_row_on_numbers_and_nan():
    values = np.array([1.0, np.nan, 2.0, 1.0, np.nan], dtype=np.float32)
    batch = SequenceBatch(np.array([5]), {"p": values}, {"p": ValueType.FLOAT})
    got = select_per_row(
        batch, Where("p", "==", FromRequest("x")), np.zeros(3, dtype=np.int64), [1, float("nan"), 2.5], None
    )
    assert got.lengths.tolist() == [2, 0, 0] and got.columns["p"].tolist() == [1.0, 1.0]


# --- definitions -----------------------------------------------------------------------------------


def test_request_filters_take_equality_or_in_and_at_most_one_per_sequence():
    view = click_view()
    with pytest.raises(SequenceDefinitionError, match=r"'n' '>' FromRequest\('x'\).*only '==' .* or 'in'"):
        SequenceUseCase(
            name="u", features=[view], sequences={"clicks": SequenceSpec(where=[Where("n", ">", FromRequest("x"))])}
        )
    two = [Where("n", "==", FromRequest("x")), Where("item", "==", FromRequest("y"))]
    with pytest.raises(SequenceDefinitionError, match="2 filters take their value from the request; at most one"):
        SequenceUseCase(name="u", features=[view], sequences={"clicks": SequenceSpec(where=two)})
    with pytest.raises(SequenceDefinitionError, match="non-empty string"):
        SequenceUseCase(
            name="u", features=[view], sequences={"clicks": SequenceSpec(where=[Where("n", "==", FromRequest(""))])}
        )


# --- served by Redis ---------------------------------------------------------------------------------


@pytest.fixture
def candidate_store(tmp_path, redis_server, redis_client):
    """The candidates repository with users 0-3 pushed online and offline, the request time pinned to
    ``NOW`` (so online requests serve what training rows at ``NOW`` get)."""
    store = applied_store(
        tmp_path / "repo",
        "cand",
        sequence_online(redis_server.connection_string),
        candidates_repo.objects(tmp_path / "repo" / "data"),
    )
    events = purchases(range(4), 120, NOW, seed=7)
    store.push("purchases_push", events, to=PushMode.ONLINE_AND_OFFLINE)
    feast_internals.store_provider(store).online_store.clock = lambda: NOW.timestamp()
    return store, events


def _seconds(values):
    return [int(pd.Timestamp(v).timestamp()) for v in values]


def test_each_row_gets_the_newest_events_of_its_candidates_category(candidate_store):
    store, events = candidate_store
    rows = [{"user_id": u, "candidate_category": c} for u in (0, 1, 3, 9) for c in [*CATEGORIES, "none"]]
    served = store.get_online_features(features=store.get_feature_service("like_candidate"), entity_rows=rows).to_dict()
    assert served["user_id"] == [r["user_id"] for r in rows] and "candidate_category" not in served
    for i, row in enumerate(rows):
        want = expected(events, row["user_id"], lambda e, c=row["candidate_category"]: e["category"] == c, 5)
        assert served["item_id"][i] == want["item_id"].tolist(), row
        assert served["category"][i] == [row["candidate_category"]] * len(want)
        assert _seconds(served["ts"][i]) == _seconds(want["ts"])
    assert sum(map(len, served["item_id"])) > 0


def test_padded_oldest_first_with_a_fixed_filter_and_jagged_in_lists(candidate_store):
    store, events = candidate_store
    rows = {"user_id": [2, 2, 2, 0], "candidate_category": ["c1", "c2", "c1", "c5"]}
    padded = store.get_online_features(
        features=store.get_feature_service("like_candidate_padded"), entity_rows=rows
    ).to_dict()
    for i, (user_id, category) in enumerate(zip(rows["user_id"], rows["candidate_category"])):
        want = expected(events, user_id, lambda e, c=category: e["price"] > 10.0 and e["category"] == c, 4)
        items = want["item_id"].tolist()[::-1]
        assert padded["item_id"][i] == [""] * (4 - len(items)) + items
        assert padded["purchases__mask"][i] == [False] * (4 - len(items)) + [True] * len(items)
        ages = [int(NOW.timestamp()) - s for s in _seconds(want["ts"])][::-1]
        assert padded["age_s"][i][4 - len(items) :] == ages

    shops = [[1], [2, 3], [], [3, 3, 1], [7]]
    rows_in = {"user_id": [1] * len(shops), "shops": shops}
    jagged = store.get_online_features(
        features=store.get_feature_service("in_shops_jagged"), entity_rows=rows_in
    ).to_dict()
    for i, wanted in enumerate(shops):
        want = expected(events, 1, lambda e, s=set(wanted): e["shop"] in s, 3)
        assert jagged["item_id"][i] == want["item_id"].tolist()
        assert jagged["purchases__length"][i] == len(want)


_examples = itertools.count()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    per_user=st.integers(0, 400),
    asked=st.lists(st.tuples(st.integers(0, 2), st.sampled_from([*CATEGORIES, "x"])), min_size=1, max_size=30),
)
def test_served_rows_equal_a_naive_reference_for_random_histories(candidate_store, seed, per_user, asked):
    """Random histories (some longer than max_length), candidates and users; ``length`` 5."""
    store, _ = candidate_store
    base = 1000 + 10 * next(_examples)  # users of their own per example (hypothesis repeats seeds)
    events = purchases([base, base + 1, base + 2], per_user, NOW, seed)
    if len(events):
        store.push("purchases_push", events)
    rows = {"user_id": [base + u for u, _ in asked], "candidate_category": [c for _, c in asked]}
    served = store.get_online_features(features=store.get_feature_service("like_candidate"), entity_rows=rows).to_dict()
    for i, (user_id, category) in enumerate(zip(rows["user_id"], rows["candidate_category"])):
        want = expected(events, user_id, lambda e, c=category: e["category"] == c, 5) if len(events) else events
        assert served["item_id"][i] == want["item_id"].tolist()


# --- bad request values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, rows, message",
    [
        ("like_candidate", {"user_id": [0, 1]}, r"request column 'candidate_category', which the entity rows lack"),
        (
            "like_candidate",
            {"user_id": [0, 1], "candidate_category": ["c1", 5]},
            r"row 1 has 5, expected a STRING value",
        ),
        ("like_candidate", {"user_id": [0, 1], "candidate_category": ["c1", None]}, r"row 1 has None"),
        (
            "in_shops_jagged",
            {"user_id": [0, 1, 2], "shops": [[1], [2], 3]},
            r"'in'\); row 2 has 3, expected a list of INT64",
        ),
        (
            "in_shops_jagged",
            {"user_id": [0, 1], "shops": [[1], [2, "3"]]},
            r"row 1 has \[2, '3'\], expected a list of INT64",
        ),
        ("in_shops_jagged", {"user_id": [0], "shops": [[True]]}, r"row 0 has \[True\]"),
    ],
)
def test_bad_request_values_fail_the_request_naming_the_row(candidate_store, name, rows, message):
    store, _ = candidate_store
    with pytest.raises(SequenceRequestError, match=message) as refused:
        store.get_online_features(features=store.get_feature_service(name), entity_rows=rows)
    assert refused.value.http_status_code() == 422


def test_too_many_candidate_rows_are_refused_by_max_entities(candidate_store):
    store, _ = candidate_store
    rows = {"user_id": [0] * 201, "candidate_category": ["c1"] * 201}
    with pytest.raises(SequenceRequestError, match="201 entity rows exceeds its max_entities=200") as refused:
        store.get_online_features(features=store.get_feature_service("like_candidate"), entity_rows=rows)
    assert refused.value.http_status_code() == 413
    served = store.get_online_features(
        features=store.get_feature_service("like_candidate"), entity_rows={k: v[:200] for k, v in rows.items()}
    ).to_dict()
    assert len(served["item_id"]) == 200
