"""Training data of a use case equals what its online path serves at each row's timestamp."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from feast.data_source import PushMode
from test_offline import comparable
from test_serving import USERS, _clicks, _rows, _store

from feast_sequence import (
    SequenceRequestError,
    feast_internals,
    get_training_data,
    sequence_settings,
    to_jagged,
    to_numpy,
    to_tensors,
)

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


@pytest.fixture
def parity_store(tmp_path, redis_server, redis_client):
    """The serving repository, pushed online and offline, with the online request time pinned to a
    whole second ``T``: online requests then serve what training rows at ``T`` get."""
    store = _store(tmp_path / "repo", redis_server, "parity")
    store.apply(serving_repo.objects(tmp_path / "repo" / "data"))
    store.push("items_push", serving_repo.item_rows(30, NOW - pd.Timedelta(days=90)), to=PushMode.ONLINE_AND_OFFLINE)
    for seed in (1, 2):
        store.push("clicks_push", _clicks(seed), to=PushMode.ONLINE_AND_OFFLINE)
    t = pd.Timestamp.now(tz="UTC").floor("s")
    feast_internals.store_provider(store).online_store.clock = lambda: t.timestamp()
    return store, pd.DataFrame({"user_id": range(USERS), "event_timestamp": t})


@pytest.mark.parametrize("name", ["ranking", "ranking_indexed", "ranking_sasrec", "history_jagged"])
def test_use_case_training_rows_equal_online(parity_store, name):
    """Sync, async and training agree, with every order and shape option (oldest first, left
    padding, ages; padded and jagged)."""
    store, entity_df = parity_store
    service = store.get_feature_service(name)
    online = store.get_online_features(features=service, entity_rows=_rows()).to_dict()
    training = get_training_data(store, entity_df, service).to_df()
    assert not _frame_equals_online(training, online, [c for c in online if c != "user_id"]), name
    served_async = asyncio.run(store.get_online_features_async(features=service, entity_rows=_rows())).to_dict()
    assert served_async == online
    shape = next(c for c in online if c.endswith(("__mask", "__length")))
    assert any(any(m) if isinstance(m, list) else m for m in online[shape])


def test_shaped_use_cases_feed_sasrec_and_keyed_jagged_layouts(parity_store):
    """Served ``ranking_sasrec`` is SASRec's input (oldest to newest, left-padded with 0/"", newest
    in the last slot); served ``history_jagged`` is a KeyedJaggedTensor's values + lengths per key,
    in time order. Checked with numpy against the default (newest first) use case's events."""
    store, _ = parity_store
    rows = _rows()
    sasrec = store.get_online_features(features=store.get_feature_service("ranking_sasrec"), entity_rows=rows)
    padded = to_numpy(sasrec.to_dict())
    plain = store.get_online_features(features=store.get_feature_service("ranking_serving"), entity_rows=rows).to_dict()
    assert padded["item_id"].shape == (USERS, 3) and padded["age_s"].dtype == np.int64
    for user in range(USERS):
        newest_first = [i for i, real in zip(plain["item_id"][user], plain["clicks__mask"][user]) if real]
        pad = 3 - len(newest_first)
        assert padded["item_id"][user].tolist() == [""] * pad + newest_first[::-1]
        assert padded["clicks__mask"][user].tolist() == [False] * pad + [True] * len(newest_first)
        ages = padded["age_s"][user][pad:]
        assert (padded["age_s"][user][:pad] == 0).all() and (np.diff(ages) <= 0).all() and (ages >= 0).all()
    assert padded["clicks__mask"][:, -1].any()  # the newest event of a non-empty row sits last

    history = store.get_online_features(features=store.get_feature_service("history_jagged"), entity_rows=rows)
    served = history.to_dict()
    keys = ["item_id", "kind", "age_s"]
    jagged = to_jagged(served, keys)
    lengths = np.asarray(served["clicks__length"])
    values, key_lengths = _keyed_jagged(jagged, keys)
    assert key_lengths.tolist() == lengths.tolist() * len(keys)
    offsets = np.concatenate([[0], np.cumsum(key_lengths)])
    for k, key in enumerate(keys):
        for user in range(USERS):
            segment = values[offsets[k * USERS + user] : offsets[k * USERS + user + 1]].tolist()
            assert segment == served[key][user]
    for user in range(USERS):  # time order: ages never grow along a row
        assert (np.diff(served["age_s"][user]) <= 0).all()
        assert comparable(served["ts"][user]) == sorted(comparable(served["ts"][user]))


def _keyed_jagged(jagged, keys):
    """KeyedJaggedTensor's layout: every key's values back to back, then every key's row lengths."""
    values = np.concatenate([np.asarray(jagged[k].values, dtype=object) for k in keys])
    return values, np.concatenate([jagged[k].lengths for k in keys])


def test_shaped_output_as_torch_and_torchrec_inputs(parity_store):
    torch = pytest.importorskip("torch", reason="torch is not installed: the numpy layout test covers the shapes")
    store, _ = parity_store
    sasrec = store.get_online_features(features=store.get_feature_service("ranking_sasrec"), entity_rows=_rows())
    tensors = to_tensors(sasrec.to_dict(), ["n", "age_s", "clicks__mask"])
    assert tensors["n"].shape == (USERS, 3) and tensors["clicks__mask"][:, -1].any()
    history = store.get_online_features(features=store.get_feature_service("history_jagged"), entity_rows=_rows())
    served = history.to_dict()
    jagged = to_jagged(served, ["age_s"])
    lengths = torch.from_numpy(jagged["age_s"].lengths)
    values = torch.from_numpy(jagged["age_s"].values.astype(np.int64))
    rows = torch.split(values, lengths.tolist())
    assert [r.tolist() for r in rows] == served["age_s"]
    try:
        from torchrec.sparse.jagged_tensor import KeyedJaggedTensor
    except ImportError:
        return  # torch without torchrec: the split above is the layout KeyedJaggedTensor reads
    kjt = KeyedJaggedTensor.from_lengths_sync(keys=["age_s"], values=values, lengths=lengths)
    assert kjt["age_s"].to_dense() == list(rows)


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
