"""Candidate rows (``Where(field, op, FromRequest(column))``): each entity row gets the newest events
like its candidate, served as a naive reference computes them, and refused with the row named."""

from __future__ import annotations

import itertools

import candidates_repo
import numpy as np
import pandas as pd
import pytest
from candidates_repo import CATEGORIES, SHOPS, expected, purchases
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


def test_select_per_row_at_100000_events_with_wide_keys():
    """max_length 100,000 and more distinct values than 16-bit keys hold: the int64 path."""
    rng = np.random.default_rng(5)
    values = rng.integers(0, 80_000, 100_000)
    batch = SequenceBatch(np.array([60_000, 40_000]), {"v": values}, {"v": ValueType.INT64})
    owner = np.array([0, 1, 1, 0])
    asked = [int(values[7]), int(values[60_003]), 123_456, int(values[59_999])]
    got = select_per_row(batch, Where("v", "==", FromRequest("x")), owner, asked, 2)
    for out, (row, value) in enumerate(zip(owner, asked)):
        start = 0 if row == 0 else 60_000
        segment = values[start : start + batch.lengths[row]]
        assert got.row_lists("v")[out] == segment[segment == value][:2].tolist()
    assert got.lengths.tolist()[2] == 0


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
    shops=st.lists(st.lists(st.sampled_from([*SHOPS, 9]), max_size=4), min_size=1, max_size=10),
)
def test_served_rows_equal_a_naive_reference_for_random_histories(candidate_store, seed, per_user, asked, shops):
    """Random histories (some longer than max_length), candidates and users: ``==`` with length 5
    (``like_candidate``), ``in`` with random lists and length 3 (``in_shops_jagged``)."""
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
    rows_in = {"user_id": [base + i % 3 for i in range(len(shops))], "shops": shops}
    jagged = store.get_online_features(features=store.get_feature_service("in_shops_jagged"), entity_rows=rows_in)
    for i, (user_id, wanted) in enumerate(zip(rows_in["user_id"], shops)):
        want = expected(events, user_id, lambda e, s=set(wanted): e["shop"] in s, 3) if len(events) else events
        assert jagged.to_dict()["item_id"][i] == want["item_id"].tolist()


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


# --- training reproduces every row ---------------------------------------------------------------


CANDIDATE_COLUMNS = {
    "like_candidate": ("candidate_category", [*CATEGORIES, "none"]),
    "like_candidate_padded": ("candidate_category", CATEGORIES[:3]),
    "in_shops_jagged": ("shops", [[1], [2, 3], [], [3, 1]]),
}


def _training_rows(name: str) -> pd.DataFrame:
    column, values = CANDIDATE_COLUMNS[name]
    rows = [(u, v) for u in (0, 2, 9) for v in values]
    return pd.DataFrame({"user_id": [u for u, _ in rows], column: [v for _, v in rows], "event_timestamp": NOW})


def _same(training: pd.DataFrame, online: dict) -> list:
    from reference import comparable

    mismatches = []
    for column, served in online.items():
        for i, (got, want) in enumerate(zip(training[column], served)):
            if isinstance(want, list):
                got = [None if v is pd.NaT else v for v in comparable(got)]
                want = comparable(want)
            if got != want:
                mismatches.append((column, i, got, want))
    return mismatches


def _engine_job(store, name: str, entity_df: pd.DataFrame, events: pd.DataFrame, engine):
    """``name``'s training job through ``engine`` (events from ``events``, as Spark frames on Spark)."""
    from feast_sequence.definitions.use_case import use_case_settings
    from feast_sequence.offline.historical import SparkEngine, historical_job

    service = store.get_feature_service(name)
    request = feast_internals.historical_request(store.registry, store.project, service)
    spark = engine.spark if isinstance(engine, SparkEngine) else None

    def pull(view, settings, start, end):
        return spark.createDataFrame(events) if spark is not None else events

    return historical_job(
        store.config,
        request.feature_views,
        request.feature_refs,
        entity_df,
        False,
        None,
        [],
        pull,
        engine,
        use_case_settings(service),
        lambda enrichment: pytest.fail(f"no enrichment to read, asked for {enrichment}"),
    )


@pytest.mark.parametrize("name", list(CANDIDATE_COLUMNS))
def test_training_rows_equal_what_serving_returned_for_each_row(candidate_store, name):
    """get_training_data (the file store: the pandas engine) and the Spark engine give each
    (entity, candidate, time) row what serving gave that row at that time, in the use case's format."""
    from feast_sequence import get_training_data
    from feast_sequence.offline.historical import PandasEngine, SparkEngine, spark_session

    store, events = candidate_store
    entity_df = _training_rows(name)
    online = store.get_online_features(
        features=store.get_feature_service(name), entity_rows=entity_df.drop(columns="event_timestamp").to_dict("list")
    ).to_dict()
    online.pop("user_id")
    training = get_training_data(store, entity_df, name).to_df()
    assert not _same(training, online)
    for engine in (PandasEngine(), SparkEngine(spark_session(store.config))):
        by_engine = _engine_job(store, name, entity_df, events, engine).to_df()
        assert not _same(by_engine, online), type(engine).__name__


def test_training_rows_at_their_own_times(candidate_store):
    """Each training row sees the events before its own timestamp, filtered by its own candidate."""
    from feast_sequence import get_training_data

    store, events = candidate_store
    times = [NOW - pd.Timedelta(minutes=m) for m in (0, 30, 90)]
    entity_df = pd.DataFrame(
        [(u, c, t) for u in (1, 3) for c in ("c0", "c4") for t in times],
        columns=["user_id", "candidate_category", "event_timestamp"],
    )
    training = get_training_data(store, entity_df, "like_candidate").to_df()
    for i, (user_id, category, time) in enumerate(entity_df.itertuples(index=False)):
        before = events[events["ts"] <= time]
        want = expected(before, user_id, lambda e, c=category: e["category"] == c, 5)
        assert list(training["item_id"][i]) == want["item_id"].tolist()


def test_bad_training_rows_are_refused_naming_the_row(candidate_store):
    from feast_sequence import SequenceInputError, get_training_data

    store, _ = candidate_store
    entity_df = pd.DataFrame({"user_id": [0, 1], "candidate_category": ["c1", 3], "event_timestamp": NOW})
    with pytest.raises(SequenceInputError, match="row 1 has 3, expected a STRING value"):
        get_training_data(store, entity_df, "like_candidate").to_df()
    with pytest.raises(SequenceInputError, match="'candidate_category', which the entity rows lack"):
        get_training_data(store, entity_df.drop(columns="candidate_category"), "like_candidate").to_df()


# --- serving logs and the consistency check ---------------------------------------------------------


@pytest.mark.parametrize(
    "name, column, values",
    [
        ("like_candidate_logged", "candidate_category", ["c0", "c3", "none"]),
        ("in_shops_logged", "shops", [[1], [2, 3], []]),
    ],
)
def test_logs_record_each_rows_candidate_and_consistency_compares_per_row(candidate_store, name, column, values):
    from feast_sequence.monitoring.consistency import check_use_case
    from feast_sequence.serving import serving_log
    from feast_sequence.serving.log_files import read_file_logs

    store, events = candidate_store
    later = pd.Timestamp.now(tz="UTC").ceil("s") + pd.Timedelta(seconds=1)  # after `feast apply` recorded the views
    feast_internals.store_provider(store).online_store.clock = lambda: later.timestamp()
    service = store.get_feature_service(name)
    rows = {"user_id": [u for u in (0, 3) for _ in values], column: values * 2}
    served = store.get_online_features(features=service, entity_rows=rows).to_dict()
    assert serving_log.flush()
    logs = read_file_logs(store.config, service.logging_config.destination)
    logged = logs.to_pandas()
    assert [list(v) if column == "shops" else v for v in logged[column]] == rows[column]
    assert [list(v) for v in logged["purchases__item_id"]] == served["item_id"]

    check = check_use_case(store, service, logs)
    assert len(check.rows) == 6 and not check.rows["configuration_changed"].any()
    assert check.rows["exact_match"].all(), check.rows
    assert check.rows["online_length"].tolist() == [len(v) for v in served["item_id"]]
    # A row replayed with another candidate would not match: the comparison is per row.
    swapped = logs.set_column(logs.column_names.index(column), column, logs.column(column).take([1, 0, 2, 4, 3, 5]))
    assert not check_use_case(store, service, swapped).rows["exact_match"].all()


# --- over HTTP -------------------------------------------------------------------------------------------


def test_candidates_over_http_and_a_bad_row_is_a_422(tmp_path, redis_server, redis_client):
    """`feast-sequence serve`'s /get-online-features takes candidate columns in "entities", like
    entity keys; a bad value is a 422 naming the row, and the next request is served as usual."""
    import json
    import urllib.error

    from feast import FeatureStore

    from feast_server import feast_sequence_serve, module_repo, post

    repo = tmp_path / "repo"
    env = module_repo(repo, "candidates_repo", "cand_http", sequence_online(redis_server.connection_string))
    store = FeatureStore(repo_path=str(repo))
    store.push("purchases_push", purchases(range(2), 50, NOW, seed=3))
    with feast_sequence_serve(repo, env=env) as port:
        entities = {"user_id": [0, 0, 1], "candidate_category": ["c1", "c2", "c1"]}
        body = post(port, "/get-online-features", {"feature_service": "like_candidate", "entities": entities})
        served = {n: r["values"] for n, r in zip(body["metadata"]["feature_names"], body["results"])}
        in_python = store.get_online_features(
            features=store.get_feature_service("like_candidate"), entity_rows=entities
        )
        assert served["item_id"] == in_python.to_dict()["item_id"] and any(served["item_id"])
        bad = {"user_id": [0, 1], "candidate_category": ["c1", 7]}
        with pytest.raises(urllib.error.HTTPError) as refused:
            post(port, "/get-online-features", {"feature_service": "like_candidate", "entities": bad})
        assert refused.value.code == 422
        assert "request column 'candidate_category'; row 1 has 7, expected a STRING value" in json.dumps(
            json.loads(refused.value.read().decode())
        )
        again = post(port, "/get-online-features", {"feature_service": "like_candidate", "entities": entities})
        assert again["results"] == body["results"]


def test_training_from_logs_joins_each_label_to_its_own_candidates_response(candidate_store):
    from feast_sequence import SequenceInputError
    from feast_sequence.monitoring.training_from_logs import training_frame_from_logs
    from feast_sequence.serving import serving_log
    from feast_sequence.serving.log_files import read_file_logs

    store, _ = candidate_store
    service = store.get_feature_service("like_candidate_logged")
    rows = {"user_id": [0, 0, 1], "candidate_category": ["c0", "c3", "c0"]}
    served = store.get_online_features(features=service, entity_rows=rows).to_dict()
    assert serving_log.flush()
    logs = read_file_logs(store.config, service.logging_config.destination)
    labels = pd.DataFrame({**rows, "event_timestamp": NOW + pd.Timedelta(seconds=5), "clicked": [1, 0, 1]})
    labels = labels.iloc[[2, 1, 0]].reset_index(drop=True)  # joined by candidate, not by position
    frame = training_frame_from_logs(store, service, labels, logs)
    assert [list(v) for v in frame["item_id"]] == [served["item_id"][i] for i in (2, 1, 0)]
    with pytest.raises(SequenceInputError, match="labels lack the request column 'candidate_category'"):
        training_frame_from_logs(store, service, labels.drop(columns="candidate_category"), logs)
    in_shops = store.get_feature_service("in_shops_logged")
    with pytest.raises(SequenceInputError, match="by a list; use get_training_data"):
        training_frame_from_logs(store, in_shops, labels.assign(shops=[[1]] * 3), logs)
