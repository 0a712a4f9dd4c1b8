"""Training data of a use case equals what its online path serves at each row's timestamp."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from feast.data_source import PushMode
from test_offline import comparable
from test_serving import USERS, _clicks, _rows, _store

from feast_sequence import SequenceRequestError, get_training_data, sequence_settings

import serving_repo
from conftest import replay
from reference import reference_sequences, retail_records

NOW = pd.Timestamp.now(tz="UTC")


def _values(values) -> list:
    """``comparable``, with pandas' NaT (a padded timestamp in a DataFrame) as None, as served."""
    return [None if v is pd.NaT else v for v in comparable(values)]


def _frame_equals_online(training: pd.DataFrame, online: dict, columns) -> list:
    mismatches = []
    for column in columns:
        for i, (got, want) in enumerate(zip(training[column], online[column])):
            same = _values(got) == _values(want) if isinstance(want, list) else got == pytest.approx(want)
            if not same:
                mismatches.append((column, i, got, want))
    return mismatches


def test_use_case_training_rows_equal_online(tmp_path, redis_server, redis_client):
    store = _store(tmp_path / "repo", redis_server, "parity")
    store.apply(serving_repo.objects(tmp_path / "repo" / "data"))
    store.push("items_push", serving_repo.item_rows(30, NOW - pd.Timedelta(days=90)), to=PushMode.ONLINE_AND_OFFLINE)
    for seed in (1, 2):
        store.push("clicks_push", _clicks(seed), to=PushMode.ONLINE_AND_OFFLINE)
    entity_df = pd.DataFrame({"user_id": range(USERS), "event_timestamp": pd.Timestamp.now(tz="UTC")})
    for name in ("ranking", "ranking_indexed"):
        service = store.get_feature_service(name)
        online = store.get_online_features(features=service, entity_rows=_rows()).to_dict()
        training = get_training_data(store, entity_df, service).to_df()
        assert not _frame_equals_online(training, online, [c for c in online if c != "user_id"]), name
        assert any(any(m) for m in online[next(c for c in online if c.endswith("__mask"))])


def test_plain_refs_are_not_shaped(tmp_path, redis_server, redis_client):
    """Feature refs that are not exactly a use case's give whole, unshaped sequences."""
    store = _store(tmp_path / "repo", redis_server, "plain")
    store.apply(serving_repo.objects(tmp_path / "repo" / "data"))
    store.push("clicks_push", _clicks(3), to=PushMode.ONLINE_AND_OFFLINE)
    entity_df = pd.DataFrame({"user_id": [0, 1], "event_timestamp": pd.Timestamp.now(tz="UTC")})
    training = store.get_historical_features(entity_df=entity_df, features=["clicks:item_id", "clicks:kind"]).to_df()
    assert "clicks__mask" not in training.columns
    assert max(len(v) for v in training["item_id"]) > 3  # the whole stored sequence, not the use case's 3


def test_a_use_case_through_get_historical_features_is_refused(tmp_path, redis_server, redis_client):
    """Feast cannot tell the provider which FeatureService was asked for: rather than train on
    unshaped sequences, the plain call fails and names the call that shapes them."""
    store = _store(tmp_path / "repo", redis_server, "refused")
    store.apply(serving_repo.objects(tmp_path / "repo" / "data"))
    store.push("items_push", serving_repo.item_rows(30, NOW - pd.Timedelta(days=90)), to=PushMode.ONLINE_AND_OFFLINE)
    store.push("clicks_push", _clicks(3), to=PushMode.ONLINE_AND_OFFLINE)
    entity_df = pd.DataFrame({"user_id": [0, 1], "event_timestamp": pd.Timestamp.now(tz="UTC")})
    explicit = get_training_data(store, entity_df, "ranking_serving").to_df()
    assert "clicks__mask" in explicit.columns
    call = r"feast_sequence.get_training_data\(store, entity_df, 'ranking_serving'\)"
    with pytest.raises(SequenceRequestError, match=r"\['ranking_serving'\].*" + call):
        store.get_historical_features(entity_df=entity_df, features=store.get_feature_service("ranking_serving"))
    # The same refs as a list are the same request to the provider: refused too.
    refs = ["clicks:item_id", "clicks:kind", "clicks:n", "clicks:ts"]
    with pytest.raises(SequenceRequestError, match=call):
        store.get_historical_features(entity_df=entity_df, features=refs)
    # Not exactly a use case's refs: served unshaped, as before.
    assert "clicks__mask" not in store.get_historical_features(entity_df=entity_df, features=refs[:3]).to_df()


def test_get_training_data_wants_a_use_case(tmp_path, redis_server, redis_client):
    from feast import FeatureService

    store = _store(tmp_path / "repo", redis_server, "notusecase")
    objects = serving_repo.objects(tmp_path / "repo" / "data")
    clicks = next(o for o in objects if getattr(o, "name", None) == "clicks")
    store.apply([*objects, FeatureService(name="plain", features=[clicks[["item_id"]]])])
    entity_df = pd.DataFrame({"user_id": [0], "event_timestamp": pd.Timestamp.now(tz="UTC")})
    with pytest.raises(SequenceRequestError, match=r"'plain' is not a sequence use case"):
        get_training_data(store, entity_df, "plain")


@pytest.fixture
def retail_served(retail_store, retail_events):
    replay(retail_store, retail_events.purchases, "purchase_push")
    replay(retail_store, retail_events.returns, "return_push")
    retail_store.write_to_online_store("item", retail_events.items)
    return retail_store


def test_retail_use_case_training_equals_online(retail_served, retail_events):
    store = retail_served
    service = store.get_feature_service("purchase_ranking")
    customers = sorted(set(retail_events.purchases["customer_id"]))[:1500]
    t = retail_events.purchases["event_timestamp"].max() + timedelta(days=1)
    training = get_training_data(
        store,
        pd.DataFrame({"customer_id": customers, "event_timestamp": t}),
        "purchase_ranking",
        full_feature_names=True,
    ).to_df()
    mismatches = []
    for start in range(0, len(customers), 500):
        chunk = customers[start : start + 500]
        online = store.get_online_features(
            features=service, entity_rows=[{"customer_id": c} for c in chunk], full_feature_names=True
        ).to_dict()
        part = training.iloc[start : start + 500].reset_index(drop=True)
        mismatches += _frame_equals_online(part, online, [c for c in online if c != "customer_id"])
    assert not mismatches, f"{len(mismatches)} differences, e.g. {mismatches[:3]}"
    assert (
        training["customer_purchases__item_description"].map(lambda v: any(v)).mean() > 0.9
    )  # enrichment really joined


def test_retail_use_case_training_at_sampled_times_equals_the_reference(retail_store, retail_events):
    """Point in time: purchases up to T, quantity > 0, newest 10, items as of T, padded."""
    events, items = retail_events.purchases, retail_events.items
    rng = np.random.default_rng(7)
    customers = rng.choice(events["customer_id"].unique(), 60, replace=False)
    low, high = events["event_timestamp"].min().value, events["event_timestamp"].max().value
    times = pd.to_datetime(rng.integers(low, high, len(customers)), utc=True).floor("min")
    training = get_training_data(
        retail_store,
        pd.DataFrame({"customer_id": customers, "event_timestamp": times}),
        retail_store.get_feature_service("purchase_ranking"),
        full_feature_names=True,
    ).to_df()
    settings = sequence_settings(retail_store.get_feature_view("customer_purchases"))
    catalog = items.set_index("item_id")
    for row in training.itertuples(index=False):
        as_of = pd.Timestamp(row.event_timestamp)
        as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of
        mine = events[(events["customer_id"] == row.customer_id) & (events["event_timestamp"] <= as_of)]
        stored = reference_sequences(settings, retail_records(mine)).get(row.customer_id, [])
        kept = [e for e in stored if e["quantity"] > 0][:10]
        pad = 10 - len(kept)
        known = [e["item_id"] in catalog.index and catalog.loc[e["item_id"], "event_timestamp"] <= as_of for e in kept]
        assert comparable(row.customer_purchases__item_id) == [e["item_id"] for e in kept] + [""] * pad
        assert comparable(row.customer_purchases__mask) == [True] * len(kept) + [False] * pad
        assert (
            comparable(row.customer_purchases__item_description)
            == [catalog.loc[e["item_id"], "description"] if k else "" for e, k in zip(kept, known)] + [""] * pad
        )
