"""Training data of a use case equals what its online path serves at each row's timestamp."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from feast import FeatureStore
from feast.data_source import PushMode

from feast_sequence import (
    SequenceRequestError,
    feast_internals,
    get_training_data,
    sequence_settings,
    to_jagged,
    to_numpy,
    to_tensors,
)
from feast_sequence.cli.online import to_json

import serving_repo
from feast_server import FEAST_SEQUENCE, TESTS, feast_sequence_serve, feast_serve, module_repo, post
from reference import comparable, reference_sequences, retail_records
from repos import FEAST, online_chunks, sequence_online
from serving_repo import USERS, recent_clicks, serving_store, user_rows

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
    store = serving_store(tmp_path / "repo", redis_server, "parity")
    store.apply(serving_repo.objects(tmp_path / "repo" / "data"))
    store.push("items_push", serving_repo.item_rows(30, NOW - pd.Timedelta(days=90)), to=PushMode.ONLINE_AND_OFFLINE)
    for seed in (1, 2):
        store.push("clicks_push", recent_clicks(seed), to=PushMode.ONLINE_AND_OFFLINE)
    t = pd.Timestamp.now(tz="UTC").floor("s")
    feast_internals.store_provider(store).online_store.clock = lambda: t.timestamp()
    return store, pd.DataFrame({"user_id": range(USERS), "event_timestamp": t})


@pytest.mark.parametrize("name", ["ranking", "ranking_indexed", "ranking_sasrec", "history_jagged"])
def test_use_case_training_rows_equal_online(parity_store, name):
    """Sync, async and training agree, with every order and shape option (oldest first, left
    padding, ages; padded and jagged)."""
    store, entity_df = parity_store
    service = store.get_feature_service(name)
    online = store.get_online_features(features=service, entity_rows=user_rows()).to_dict()
    training = get_training_data(store, entity_df, service).to_df()
    assert not _frame_equals_online(training, online, [c for c in online if c != "user_id"]), name
    served_async = asyncio.run(store.get_online_features_async(features=service, entity_rows=user_rows())).to_dict()
    assert served_async == online
    shape = next(c for c in online if c.endswith(("__mask", "__length")))
    assert any(any(m) if isinstance(m, list) else m for m in online[shape])


def test_shaped_use_cases_feed_sasrec_and_keyed_jagged_layouts(parity_store):
    """Served ``ranking_sasrec`` is SASRec's input (oldest to newest, left-padded with 0/"", newest
    in the last slot); served ``history_jagged`` is a KeyedJaggedTensor's values + lengths per key,
    in time order. Checked with numpy against the default (newest first) use case's events."""
    store, _ = parity_store
    rows = user_rows()
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
    sasrec = store.get_online_features(features=store.get_feature_service("ranking_sasrec"), entity_rows=user_rows())
    tensors = to_tensors(sasrec.to_dict(), ["n", "age_s", "clicks__mask"])
    assert tensors["n"].shape == (USERS, 3) and tensors["clicks__mask"][:, -1].any()
    history = store.get_online_features(features=store.get_feature_service("history_jagged"), entity_rows=user_rows())
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
    store = serving_store(tmp_path / "repo", redis_server, "plain")
    store.apply(serving_repo.objects(tmp_path / "repo" / "data"))
    store.push("clicks_push", recent_clicks(3), to=PushMode.ONLINE_AND_OFFLINE)
    entity_df = pd.DataFrame({"user_id": [0, 1], "event_timestamp": pd.Timestamp.now(tz="UTC")})
    training = store.get_historical_features(entity_df=entity_df, features=["clicks:item_id", "clicks:kind"]).to_df()
    assert "clicks__mask" not in training.columns
    assert max(len(v) for v in training["item_id"]) > 3  # the whole stored sequence, not the use case's 3


def test_a_use_case_through_get_historical_features_is_refused(tmp_path, redis_server, redis_client):
    """Feast cannot tell the provider which FeatureService was asked for: rather than train on
    unshaped sequences, the plain call fails and names the call that shapes them."""
    store = serving_store(tmp_path / "repo", redis_server, "refused")
    store.apply(serving_repo.objects(tmp_path / "repo" / "data"))
    store.push("items_push", serving_repo.item_rows(30, NOW - pd.Timedelta(days=90)), to=PushMode.ONLINE_AND_OFFLINE)
    store.push("clicks_push", recent_clicks(3), to=PushMode.ONLINE_AND_OFFLINE)
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

    store = serving_store(tmp_path / "repo", redis_server, "notusecase")
    objects = serving_repo.objects(tmp_path / "repo" / "data")
    clicks = next(o for o in objects if getattr(o, "name", None) == "clicks")
    store.apply([*objects, FeatureService(name="plain", features=[clicks[["item_id"]]])])
    entity_df = pd.DataFrame({"user_id": [0], "event_timestamp": pd.Timestamp.now(tz="UTC")})
    with pytest.raises(SequenceRequestError, match=r"'plain' is not a sequence use case"):
        get_training_data(store, entity_df, "plain")


@pytest.fixture
def retail_served(retail_replayed, retail_events):
    retail_replayed.write_to_online_store("item", retail_events.items)
    return retail_replayed


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
    for start, chunk, online in online_chunks(store, service, "customer_id", customers, 500):
        part = training.iloc[start : start + len(chunk)].reset_index(drop=True)
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


# --- Training output is shaped like serving output (docs/concepts.md): for each output format, the
# same column names, timestamp type (UTC datetimes) and padding values from get_online_features,
# from `feast serve` over HTTP, and from get_historical_features / get_training_data, on the file and
# the Spark offline stores.

ABSENT_USER = 99  # has no events: every slot of its padded sequences is a pad


def _http_form(value):
    """How `feast serve` writes an online value: timestamps as epoch seconds, None as null."""
    if isinstance(value, list):
        return [_http_form(v) for v in value]
    return int(value.timestamp()) if isinstance(value, datetime) else value


def _is_utc(values) -> bool:
    return all(v is None or (isinstance(v, datetime) and v.tzinfo is timezone.utc) for v in values)


def assert_shaped_alike(online: dict, http: dict, training: pd.DataFrame, keys, timestamps) -> None:
    """``online`` (``to_dict()``), ``http`` (feature name -> values) and ``training`` (a frame of the
    same rows) have the same feature columns and values; ``timestamps`` are lists of UTC datetimes
    and None online and offline, epoch seconds and null over HTTP."""
    assert set(http) == set(online)
    features = [c for c in online if c not in keys]
    assert set(features) <= set(training.columns), f"not in training data: {set(features) - set(training.columns)}"
    assert set(timestamps) <= set(features)
    for column in features:
        assert http[column] == _http_form(online[column]), column
        for row, want in enumerate(online[column]):
            got = training[column].iloc[row]
            if column in timestamps:
                assert isinstance(got, list) and _is_utc(got) and _is_utc(want), (column, row, got, want)
                assert got == want, (column, row)
            elif isinstance(want, list):
                assert comparable(got) == comparable(want), (column, row, got, want)
            else:
                assert got == want, (column, row)


def _http_values(port: int, request: dict) -> dict:
    body = post(port, "/get-online-features", request)
    return {n: r["values"] for n, r in zip(body["metadata"]["feature_names"], body["results"])}


ITEMS = serving_repo.item_rows(30, NOW - pd.Timedelta(days=90))
CLICKS = recent_clicks(5)


@pytest.fixture(scope="module")
def file_store_servers(tmp_path_factory, redis_server):
    """The serving repository on the file offline store, applied with the CLI, its events in the
    batch sources, with `feast serve` and `feast-sequence serve` on it."""
    repo = tmp_path_factory.mktemp("shape") / "repo"
    env = module_repo(repo, "serving_repo", "shape", sequence_online(redis_server.connection_string))
    store = FeatureStore(repo_path=str(repo))
    store.push("items_push", ITEMS, to=PushMode.OFFLINE)
    store.push("clicks_push", CLICKS, to=PushMode.OFFLINE)
    with feast_serve(repo, env=env) as port, feast_sequence_serve(repo, env=env) as sequence_port:
        yield store, port, sequence_port


@pytest.fixture
def file_store_served(file_store_servers, redis_client):
    """``file_store_servers`` with the same events online (pushed again for each test, since other
    tests flush Redis; pushes are idempotent)."""
    store = file_store_servers[0]
    store.push("items_push", ITEMS)
    store.push("clicks_push", CLICKS)
    return file_store_servers


@pytest.mark.parametrize("full_feature_names", [False, True])
def test_padded_output_is_shaped_alike_on_the_file_store(file_store_served, full_feature_names):
    store, port, sequence_port = file_store_served
    users = [0, 1, ABSENT_USER]
    online = store.get_online_features(
        features=store.get_feature_service("ranking_serving"),
        entity_rows=[{"user_id": u} for u in users],
        full_feature_names=full_feature_names,
    ).to_dict()
    http = _http_values(
        port,
        {
            "feature_service": "ranking_serving",
            "entities": {"user_id": users},
            "full_feature_names": full_feature_names,
        },
    )
    entity_df = pd.DataFrame({"user_id": users, "event_timestamp": pd.Timestamp.now(tz="UTC")})
    training = get_training_data(store, entity_df, "ranking_serving", full_feature_names=full_feature_names).to_df()
    prefix = "clicks__" if full_feature_names else ""
    assert_shaped_alike(online, http, training, ["user_id"], [f"{prefix}ts"])
    request = {"feature_service": "ranking_serving", "entities": {"user_id": users}}
    assert _http_values(sequence_port, {**request, "full_feature_names": full_feature_names}) == http
    # The padding values: the type's null default, None for timestamps (null over HTTP).
    assert online[f"{prefix}ts"][-1] == [None] * 3 and http[f"{prefix}ts"][-1] == [None] * 3
    assert online[f"{prefix}item_id"][-1] == [""] * 3 and online[f"{prefix}n"][-1] == [0] * 3
    assert online[f"{prefix}cost"][-1] == [0.0] * 3 and online["clicks__mask"][-1] == [False] * 3
    assert any(any(m) for m in online["clicks__mask"])  # some real events too
    assert training["event_timestamp"].dtype == "datetime64[us, UTC]"


def test_lists_with_the_timestamp_field_are_shaped_alike_without_full_feature_names(file_store_served):
    """The view's timestamp field requested as a sequence feature, with the entity_df's timestamp
    column of the same name: the sequence keeps its online name, the entity_df's column moves."""
    store, port, _ = file_store_served
    users = [0, 1, 2]
    features = ["clicks:ts", "clicks:item_id"]
    online = store.get_online_features(features=features, entity_rows=[{"user_id": u} for u in users]).to_dict()
    http = _http_values(port, {"features": features, "entities": {"user_id": users}})
    now = pd.Timestamp.now(tz="UTC")
    in_nanoseconds = pd.DatetimeIndex([now] * len(users)).as_unit("ns")  # what pandas makes of datetimes
    training = store.get_historical_features(
        entity_df=pd.DataFrame({"user_id": users, "ts": in_nanoseconds}), features=features
    ).to_df()
    assert_shaped_alike(online, http, training, ["user_id"], ["ts"])
    assert list(training.columns) == ["user_id", "ts__as_of", "ts", "item_id"]
    assert (training["ts__as_of"] == now).all() and training["ts__as_of"].dtype == "datetime64[us, UTC]"
    assert all(len(v) > 0 for v in online["ts"])


def test_jagged_output_is_shaped_alike_on_the_file_store(file_store_served):
    store, port, _ = file_store_served
    users = [0, 1, ABSENT_USER]
    online = store.get_online_features(
        features=store.get_feature_service("recent"), entity_rows=[{"user_id": u} for u in users]
    ).to_dict()
    http = _http_values(port, {"feature_service": "recent", "entities": {"user_id": users}})
    entity_df = pd.DataFrame({"user_id": users, "event_timestamp": pd.Timestamp.now(tz="UTC")})
    training = get_training_data(store, entity_df, "recent").to_df()
    assert_shaped_alike(online, http, training, ["user_id"], [])
    assert online["clicks__length"] == [2, 2, 0] and online["item_id"][-1] == []  # no padding


@pytest.fixture
def retail_shape_served(retail_store, retail_repo, retail_events, redis_server):
    """A few customers' events online (all of them are in the repository's Spark sources), and
    `feast serve` on the example repository."""
    purchases, returns = retail_events.purchases, retail_events.returns
    counts = returns["customer_id"].value_counts()
    customers = [int(c) for c in counts[counts >= 5].index[:2]] + [int(counts[counts == 1].index[0])]
    retail_store.push("purchase_push", purchases[purchases["customer_id"].isin(customers)])
    retail_store.push("return_push", returns[returns["customer_id"].isin(customers)])
    retail_store.write_to_online_store("item", retail_events.items)
    env = {**os.environ, "FEAST_SEQUENCE_REDIS": redis_server.connection_string}
    with feast_serve(retail_repo, env=env) as port:
        yield retail_store, port, customers + [1]  # customer 1 has no events


def test_jagged_and_padded_output_are_shaped_alike_on_spark(retail_shape_served):
    """The example repository (Spark offline store): `return_alerts` (jagged, with the view's
    `event_timestamp`, no full_feature_names needed) and `purchase_ranking` (padded)."""
    store, port, customers = retail_shape_served
    rows = [{"customer_id": c} for c in customers]
    entity_df = pd.DataFrame({"customer_id": customers, "event_timestamp": pd.Timestamp.now(tz="UTC")})
    for name, full in (("return_alerts", False), ("purchase_ranking", True)):
        online = store.get_online_features(
            features=store.get_feature_service(name), entity_rows=rows, full_feature_names=full
        ).to_dict()
        http = _http_values(
            port, {"feature_service": name, "entities": {"customer_id": customers}, "full_feature_names": full}
        )
        training = get_training_data(store, entity_df, name, full_feature_names=full).to_df()
        timestamps = [c for c in online if c.endswith("event_timestamp")]
        assert len(timestamps) == 1, timestamps
        assert_shaped_alike(online, http, training, ["customer_id"], timestamps)
        assert [len(v) > 0 for v in online[timestamps[0]]] == [True, True, True, name == "purchase_ranking"]
        if name == "purchase_ranking":
            assert online[timestamps[0]][-1] == [None] * 10 and http[timestamps[0]][-1] == [None] * 10
            assert online["customer_purchases__item_id"][-1] == [""] * 10
            assert online["customer_returns__item_id"][2][1:] == [""] * 4  # one return, then pads
        else:
            assert online[timestamps[0]][-1] == []
        assert ("event_timestamp__as_of" in training.columns) == (not full and name == "return_alerts")


def test_get_online_features_on_the_command_line(file_store_served):
    """`feast get-online-features` passes keys as text and cannot print datetimes: it is refused
    with the command that works, which prints what get_online_features serves."""
    store = file_store_served[0]
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    feast = subprocess.run(
        [FEAST, "-c", store.repo_path, "get-online-features", "-e", "user_id=0", "-f", "clicks:ts"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert feast.returncode != 0 and "feast-sequence get-online-features" in feast.stderr
    command = [FEAST_SEQUENCE, "get-online-features", "--repo", store.repo_path, "-e", "user_id=0"]
    command += ["-e", f"user_id={ABSENT_USER}", "--feature-service", "ranking_serving"]
    printed = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    online = store.get_online_features(
        features=store.get_feature_service("ranking_serving"), entity_rows=[{"user_id": 0}, {"user_id": ABSENT_USER}]
    ).to_dict()
    assert json.loads(printed) == json.loads(to_json(online))
    assert json.loads(printed)["ts"][1] == [None] * 3
    assert datetime.fromisoformat(json.loads(printed)["ts"][0][0]) == online["ts"][0][0]
