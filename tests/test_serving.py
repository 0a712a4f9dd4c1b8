"""The serving layer: use cases shape shared sequences (filter, length, window, enrichment, format)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Dict, List

import numpy as np
import pandas as pd
import pytest
from feast import FeatureStore
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from feast_sequence import (
    Limits,
    SequenceRequestError,
    SequenceSpec,
    SequenceUseCase,
    Where,
    enrich,
    sequence_settings,
    to_jagged,
    to_numpy,
)
from feast_sequence.errors import SequenceDefinitionError
from feast_sequence.serving import pipeline

import serving_repo
from reference import reference_sequences
from repos import wait_until
from serving_repo import NOW, USERS, serving_store, user_rows


def _expected(store: FeatureStore, clicks: pd.DataFrame, items: pd.DataFrame, length: int = 3) -> Dict[str, list]:
    """The ranking use case computed naively: stored sequence, window, filters, length, join, pad."""
    records = [
        {
            "entity": int(r.user_id),
            "item_id": r.item_id,
            "kind": r.kind,
            "n": int(r.n),
            "timestamp_us": r.ts.value // 1000,
        }
        for r in clicks.itertuples()
    ]
    stored = reference_sequences(sequence_settings(store.get_feature_view("clicks")), records)
    catalog = {r.item_id: (r.title, r.cost) for r in items.itertuples()}
    floor_us = (NOW - timedelta(days=30)).value // 1000
    out: Dict[str, list] = {k: [] for k in ("item_id", "kind", "n", "title", "cost", "clicks__mask")}
    for user in range(USERS):
        kept = [
            e
            for e in stored.get(user, [])
            if e["timestamp_us"] >= floor_us and e["kind"] in ("buy", "view") and e["n"] > 0
        ][:length]
        pad = length - len(kept)
        out["item_id"].append([e["item_id"] for e in kept] + [""] * pad)
        out["kind"].append([e["kind"] for e in kept] + [""] * pad)
        out["n"].append([e["n"] for e in kept] + [0] * pad)
        out["title"].append([catalog.get(e["item_id"], ("", 0.0))[0] for e in kept] + [""] * pad)
        out["cost"].append([catalog.get(e["item_id"], ("", 0.0))[1] for e in kept] + [0.0] * pad)
        out["clicks__mask"].append([True] * len(kept) + [False] * pad)
    return out


def test_use_case_serves_filtered_sized_enriched_padded_sequences(served):
    store, clicks, items = served
    got = store.get_online_features(features=store.get_feature_service("ranking"), entity_rows=user_rows()).to_dict()
    want = _expected(store, clicks, items)
    for name, values in want.items():
        assert got[name] == values, name
    # The on-demand view saw the shaped, enriched lists (before padding).
    assert got["clicks_seen"] == [sum(m) for m in want["clicks__mask"]]
    assert got["clicked_cost"] == pytest.approx([sum(c) for c in want["cost"]])
    assert any(m == [True] * 3 for m in want["clicks__mask"]) and [False] * 3 in want["clicks__mask"]
    catalog = set(items["item_id"])
    assert any(i and i not in catalog for row in want["item_id"] for i in row), "no enrichment miss tested"
    arrays = to_numpy(got, ["n", "cost", "clicks__mask"])
    assert arrays["n"].shape == (USERS, 3) and arrays["clicks__mask"].dtype == bool


def test_index_time_and_serving_time_enrichment_serve_the_same(served):
    store, _, _ = served
    rows = user_rows()
    by_index = store.get_online_features(features=store.get_feature_service("ranking_indexed"), entity_rows=rows)
    by_serving = store.get_online_features(features=store.get_feature_service("ranking_serving"), entity_rows=rows)
    indexed, serving = by_index.to_dict(), by_serving.to_dict()
    assert indexed.pop("clicks_indexed__mask") == serving.pop("clicks__mask")
    assert indexed == serving
    assert any(t for row in serving["title"] for t in row)


def test_async_path_serves_the_same(served):
    import asyncio

    store, _, _ = served
    service = store.get_feature_service("ranking")
    sync = store.get_online_features(features=service, entity_rows=user_rows()).to_dict()
    result = asyncio.run(store.get_online_features_async(features=service, entity_rows=user_rows()))
    assert result.to_dict() == sync


def test_jagged_output_and_layout(served):
    store, clicks, _ = served
    got = store.get_online_features(features=store.get_feature_service("recent"), entity_rows=user_rows(3)).to_dict()
    assert got["clicks__length"] == [len(v) for v in got["item_id"]]
    assert all(n <= 2 for n in got["clicks__length"])
    jagged = to_jagged(got, ["item_id"])["item_id"]
    assert jagged.lengths.tolist() == got["clicks__length"]
    assert jagged.values.tolist() == [i for row in got["item_id"] for i in row]
    assert jagged.offsets().tolist() == [0, *np.cumsum(got["clicks__length"]).tolist()]


def test_limits_reject_the_abusive_use_case_only(served):
    store, _, _ = served
    ranking, recent = store.get_feature_service("ranking"), store.get_feature_service("recent")
    expected = store.get_online_features(features=ranking, entity_rows=user_rows()).to_dict()
    errors: List[Exception] = []
    outputs: List[dict] = []

    def abuse() -> None:
        for _ in range(30):
            try:
                store.get_online_features(features=recent, entity_rows=user_rows(10))
            except SequenceRequestError as error:
                errors.append(error)

    def normal() -> None:
        for _ in range(30):
            outputs.append(store.get_online_features(features=ranking, entity_rows=user_rows()).to_dict())

    threads = [threading.Thread(target=abuse), threading.Thread(target=normal)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 30
    assert "Use case 'recent'" in str(errors[0]) and "max_entities=3" in str(errors[0])
    assert len(outputs) == 30 and all(o == expected for o in outputs)
    # Within its limits the same use case is served.
    assert len(store.get_online_features(features=recent, entity_rows=user_rows(3)).to_dict()["item_id"]) == 3


def test_time_budget_is_enforced(served, tmp_path):
    store, _, _ = served
    clicks = store.get_feature_view("clicks")
    strict = SequenceUseCase(name="strict", features=[clicks[["item_id"]]], limits=Limits(time_budget_ms=0.001))
    store.apply([strict])
    with pytest.raises(SequenceRequestError, match=r"Use case 'strict' exceeded its time budget.*stage 'retrieve'"):
        store.get_online_features(features=store.get_feature_service("strict"), entity_rows=user_rows(2))


def test_apply_changes_a_running_service_after_registry_refresh(served, tmp_path, redis_server):
    store, _, _ = served
    running = serving_store(Path(store.repo_path), redis_server, "serving", cache_ttl=1)
    running.refresh_registry()
    before = running.get_online_features(features=running.get_feature_service("recent"), entity_rows=user_rows(3))
    assert max(before.to_dict()["clicks__length"]) == 2
    clicks = store.get_feature_view("clicks")
    store.apply([serving_repo.recent_use_case(clicks, length=1)])

    def picked_up() -> bool:
        got = running.get_online_features(features=running.get_feature_service("recent"), entity_rows=user_rows(3))
        return bool(max(got.to_dict()["clicks__length"]) == 1)

    wait_until(picked_up, 60, "the running store to pick up the new use case", 0.2)
    # The other use cases are untouched.
    ranking = running.get_online_features(features=running.get_feature_service("ranking"), entity_rows=user_rows())
    assert (
        ranking.to_dict()["clicks__mask"]
        == store.get_online_features(features=store.get_feature_service("ranking"), entity_rows=user_rows()).to_dict()[
            "clicks__mask"
        ]
    )


def test_metrics_are_exposed_per_use_case(served):
    store, _, _ = served
    store.get_online_features(features=store.get_feature_service("ranking"), entity_rows=user_rows())
    with pytest.raises(SequenceRequestError):
        store.get_online_features(features=store.get_feature_service("recent"), entity_rows=user_rows(5))
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # what `feast serve --metrics` exposes
    text = generate_latest(registry).decode()
    assert 'feast_sequence_stage_seconds_count{stage="retrieve",use_case="ranking"}' in text
    assert 'feast_sequence_stage_seconds_count{stage="enrich",use_case="ranking"}' in text
    assert 'feast_sequence_limit_rejections_total{limit="max_entities",use_case="recent"}' in text
    for metric in (
        "feast_sequence_length_bucket",
        "feast_sequence_empty_total",
        "feast_sequence_newest_event_age_seconds_count",
        "feast_sequence_enrichment_misses_total",
    ):
        assert f"{metric}{{" in text and 'use_case="ranking"' in text, metric


@pytest.mark.parametrize(
    "spec, message",
    [
        (SequenceSpec(length=21), "length=21 is not allowed"),
        (SequenceSpec(where=[Where("colour", "==", "red")]), "unknown event field 'colour'"),
        (SequenceSpec(where=[Where("n", "~", 1)]), "unknown operator '~'"),
        (SequenceSpec(where=[Where("n", ">", "3")]), "compares a INT32 field with '3'"),
        (SequenceSpec(where=[Where("kind", ">", "a")]), "STRING fields only support"),
        (SequenceSpec(where=[Where("kind", "in", "buy")]), "needs a list of values"),
        (SequenceSpec(window=timedelta(0)), "must be positive"),
    ],
)
def test_bad_use_cases_are_refused_at_definition(tmp_path, spec, message):
    clicks = [o for o in serving_repo.objects(tmp_path) if getattr(o, "name", "") == "clicks"][0]
    with pytest.raises(SequenceDefinitionError, match=message):
        SequenceUseCase(name="bad", features=[clicks], sequences={"clicks": spec})


def test_bad_enrichments_and_formats_are_refused(tmp_path):
    objects = {getattr(o, "name", ""): o for o in serving_repo.objects(tmp_path)}
    clicks, items = objects["clicks"], objects["items"]
    with pytest.raises(SequenceDefinitionError, match="joins event field 'n' \\(INT32\\)"):
        SequenceUseCase(
            name="bad", features=[clicks], sequences={"clicks": SequenceSpec(enrich=[enrich(items, on="n")])}
        )
    with pytest.raises(SequenceDefinitionError, match="collides"):
        SequenceUseCase(
            name="bad",
            features=[clicks],
            sequences={"clicks": SequenceSpec(enrich=[enrich(items, on="item_id", features=["title"], prefix="")] * 2)},
        )
    with pytest.raises(SequenceDefinitionError, match="output='tensor' is unknown"):
        SequenceUseCase(name="bad", features=[clicks], output="tensor")
    with pytest.raises(SequenceDefinitionError, match="not sequence views of this use case"):
        SequenceUseCase(name="bad", features=[clicks], sequences={"other": SequenceSpec()})
    with pytest.raises(SequenceDefinitionError, match="limit max_entities=0 must be positive"):
        SequenceUseCase(name="bad", features=[clicks], limits=Limits(max_entities=0))


def test_offline_writer_computes_index_time_enrichments_like_pushes(served):
    """Backfill, correction and materialization write through ``write_frames``: same enrichment."""
    from feast_sequence.offline.indexing import IndexTarget, write_local
    from feast_sequence.online_store import SequenceRedisOnlineStore

    store, clicks, _ = served
    service = store.get_feature_service("ranking_indexed")
    pushed = store.get_online_features(features=service, entity_rows=user_rows()).to_dict()
    SequenceRedisOnlineStore().delete_sequence_view(store.config, "clicks_indexed")
    emptied = store.get_online_features(features=service, entity_rows=user_rows()).to_dict()
    assert not any(any(m) for m in emptied["clicks_indexed__mask"])
    settings = sequence_settings(store.get_feature_view("clicks_indexed"))
    target = IndexTarget(
        store.config.online_store, store.project, settings, store.config.entity_key_serialization_version
    )
    write_local(target, clicks)
    assert store.get_online_features(features=service, entity_rows=user_rows()).to_dict() == pushed


def test_redis_failures_are_counted_per_use_case(served):
    from feast_sequence import SequenceStoreUnavailableError
    from feast_sequence.feast_internals import store_provider
    from feast_sequence.serving import pipeline
    from feast_sequence.storage.drivers import drive

    store, _, _ = served
    request = pipeline.serve(
        store_provider(store).online_store,
        store.config,
        store.get_feature_service("recent"),
        user_rows(2),
        store.registry,
        store.project,
        False,
        False,
    )

    def unreachable(trip):
        raise SequenceStoreUnavailableError("Redis is down")

    with pytest.raises(SequenceStoreUnavailableError, match="Redis is down"):
        drive(request, unreachable)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    text = generate_latest(registry).decode()
    assert 'feast_sequence_request_errors_total{error="SequenceStoreUnavailableError",use_case="recent"}' in text


def test_padded_output_as_torch_tensors(served):
    torch = pytest.importorskip("torch", reason="torch is optional; to_tensors needs it")
    from feast_sequence import to_tensors

    store, _, _ = served
    got = store.get_online_features(features=store.get_feature_service("ranking"), entity_rows=user_rows()).to_dict()
    tensors = to_tensors(got, ["n", "cost", "clicks__mask"])
    assert tuple(tensors["n"].shape) == (USERS, 3) and tensors["clicks__mask"].dtype == torch.bool


def test_online_write_batch_computes_index_time_enrichments_like_pushes(served):
    """Custom writers calling the store's ``online_write_batch`` get the same stored enrichments."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    from feast_sequence.online_store import SequenceRedisOnlineStore

    store, clicks, _ = served
    service = store.get_feature_service("ranking_indexed")
    pushed = store.get_online_features(features=service, entity_rows=user_rows()).to_dict()
    online = SequenceRedisOnlineStore()
    online.delete_sequence_view(store.config, "clicks_indexed")
    rows = [
        (
            EntityKeyProto(join_keys=["user_id"], entity_values=[ValueProto(int64_val=int(r.user_id))]),
            {
                "item_id": ValueProto(string_val=r.item_id),
                "kind": ValueProto(string_val=r.kind),
                "n": ValueProto(int32_val=int(r.n)),
            },
            r.ts.to_pydatetime(),
            None,
        )
        for r in clicks.itertuples()
    ]
    online.online_write_batch(store.config, store.get_feature_view("clicks_indexed"), rows, None)
    assert store.get_online_features(features=service, entity_rows=user_rows()).to_dict() == pushed


@pytest.mark.parametrize(
    "service", ["ranking", "ranking_indexed", "ranking_serving", "ranking_sasrec", "history_jagged", "recent"]
)
def test_responses_built_from_whole_columns_are_those_built_value_by_value(served, monkeypatch, service):
    """Requests this small are built value by value; from BULK_FROM values on, a column's lists are
    padded as arrays and written as wire bytes (serving/response_values.py): both give one answer."""
    from feast_sequence.feast_internals import store_provider

    store, _, _ = served
    # One clock for both requests: ages (ranking_sasrec, history_jagged) and windows count from it,
    # and two requests a second boundary apart would differ by a second of age.
    now = time.time()
    monkeypatch.setattr(store_provider(store).online_store, "clock", lambda: now)
    features = store.get_feature_service(service)
    rows = user_rows(3) if service == "recent" else user_rows()  # its max_entities
    by_value = store.get_online_features(features=features, entity_rows=rows).proto
    monkeypatch.setattr(pipeline, "BULK_FROM", 0)
    by_column = store.get_online_features(features=features, entity_rows=rows).proto
    assert by_column == by_value
