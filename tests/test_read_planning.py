"""Read planning without Redis: the commands a read sends (storage/read.py), how the replies of the
READ script become Feast rows and response vectors, and how one online request plans every view
into one pipeline (online/request_plan.py). Replies are built from events the real encoder wrote,
in the shape READ returns for a sequence without a block: ``[false, members newest first]``."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any, Dict, List

import numpy as np
import pandas as pd
import pytest
from feast import Field
from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig
from feast.types import Int32

from feast_sequence import SequenceDefinitionError, SequenceRequestError, SequenceSpec, SequenceUseCase
from feast_sequence.definitions.settings import sequence_settings
from feast_sequence.online.request_plan import RequestPlan, plan_request
from feast_sequence.online_store import SequenceRedisOnlineStore, SequenceRedisOnlineStoreConfig
from feast_sequence.serving.plain_response import populate_sequences
from feast_sequence.serving.plan_cache import PlanCache
from feast_sequence.storage import blocks
from feast_sequence.storage.append import encode_frame
from feast_sequence.storage.entity_keys import entity_key_bytes_from_values
from feast_sequence.storage.keys import read_keys, sequence_keys, view_prefix
from feast_sequence.storage.read import decode_rows, plan_read, read_commands
from feast_sequence.storage.redis_io import evalsha
from feast_sequence.storage.scripts import READ

from repos import click_view

VIEW = click_view(max_length=5, ttl=timedelta(hours=1))
SETTINGS = sequence_settings(VIEW)
NOW_US = 1_700_000_000_000_000
HOUR_US = 3_600_000_000

#: Events of two users, oldest first per user; user 3 has none.
EVENTS = pd.DataFrame(
    {
        "user_id": [1, 2, 1, 1, 2],
        "item": ["a", "x", "b", "c", "y"],
        "n": [1, 10, 2, 3, 20],
        "ts": pd.to_datetime([NOW_US - 50_000_000 + i * 1_000_000 for i in range(5)], unit="us", utc=True),
    }
)


def _key(user: int) -> Dict[str, ValueProto]:
    return {"user_id": ValueProto(int64_val=user)}


def _commands(users: List[int]) -> List[Any]:
    """The READ calls whose replies ``_replies`` gives (a corrupt entity is named by their keys)."""
    return read_commands(SETTINGS, "p", [_key(user) for user in users], NOW_US)


def _replies(users: List[int]) -> List[Any]:
    """READ's reply per user (no block): the user's stored members, newest first."""
    events = encode_frame(SETTINGS, EVENTS)
    by_user: Dict[bytes, List[Any]] = {}
    for key, score, member in zip(events.entity_keys, events.scores_us, events.members):
        by_user.setdefault(key, []).append((score, member))
    replies = []
    for user in users:
        stored = sorted(by_user.get(entity_key_bytes_from_values(_key(user)), []), reverse=True)
        replies.append([None, [member for _, member in stored]])
    return replies


def test_a_read_plans_every_served_feature_unless_some_are_requested():
    assert plan_read(SETTINGS, None).requested_names == ["item", "n", "ts"]
    assert plan_read(SETTINGS, ["n"]).requested_names == ["n"]
    with pytest.raises(SequenceDefinitionError, match=r"'clicks' has no feature\(s\) \['price'\]; it serves"):
        plan_read(SETTINGS, ["n", "price"])


def test_read_commands_call_read_once_per_entity_from_the_ttl_with_max_length():
    commands = read_commands(SETTINGS, "proj", [_key(1), _key(2)], NOW_US)
    prefix = view_prefix("proj", "clicks")
    expected = [
        evalsha(READ, read_keys(sequence_keys(prefix, entity_key_bytes_from_values(_key(u)))), (NOW_US - HOUR_US, 5))
        for u in (1, 2)
    ]
    assert commands == expected


def test_a_use_cases_window_and_length_narrow_the_read_and_no_ttl_reads_from_the_start():
    (narrow,) = read_commands(SETTINGS, "proj", [_key(1)], NOW_US, limit=2, window_us=60_000_000)
    assert narrow[-2:] == (NOW_US - 60_000_000, 2)  # the window is shorter than the TTL
    (wide,) = read_commands(SETTINGS, "proj", [_key(1)], NOW_US, window_us=2 * HOUR_US)
    assert wide[-2:] == (NOW_US - HOUR_US, 5)  # the TTL is shorter than the window
    forever = sequence_settings(click_view(name="forever", schema=[Field(name="n", dtype=Int32)], max_length=3))
    (unbounded,) = read_commands(forever, "proj", [_key(1)], NOW_US)
    assert unbounded[-2:] == ("-inf", 3)


def test_views_of_one_request_encode_each_entity_once_through_the_key_cache():
    shared = [_key(1), _key(2)]  # Feast's entity value objects, shared by the views of a request
    cache: Dict[Any, bytes] = {}
    first = read_commands(SETTINGS, "proj", shared, NOW_US, key_cache=cache)
    again = read_commands(SETTINGS, "proj", shared, NOW_US, key_cache=cache)
    assert first == again and len(cache) == 2
    assert set(cache.values()) == {entity_key_bytes_from_values(k) for k in shared}


def test_replies_decode_to_one_row_of_lists_per_entity_newest_first():
    rows = decode_rows(plan_read(SETTINGS, ["item", "n"]), _commands([1, 2, 3]), _replies([1, 2, 3]))
    lists = [{name: list(getattr(v, v.WhichOneof("val")).val) for name, v in values.items()} for _, values in rows]
    assert lists[0] == {"item": ["c", "b", "a"], "n": [3, 2, 1]}
    assert lists[1] == {"item": ["y", "x"], "n": [20, 10]}
    # An entity without events gets empty lists, not Feast's NOT_FOUND.
    assert lists[2] == {"item": [], "n": []} and rows[2][1] is not None


def test_populate_sequences_fills_each_request_row_from_its_unique_entity():
    response = GetOnlineFeaturesResponse()
    read = plan_read(SETTINGS, ["item", "ts"])
    # Unique entities user 2, user 1, user 3; request rows: user 1, user 2, user 1 again, user 3.
    populate_sequences(
        read, VIEW, [[1], [0, 2], [3]], 4, _commands([2, 1, 3]), _replies([2, 1, 3]), response, True, False
    )
    assert list(response.metadata.feature_names.val) == ["clicks__item", "clicks__ts"]
    items, timestamps = response.results
    assert [list(v.string_list_val.val) for v in items.values] == [["c", "b", "a"], ["y", "x"], ["c", "b", "a"], []]
    newest_user_1 = (NOW_US - 50_000_000 + 3_000_000) // 1_000_000
    assert items.event_timestamps[0].seconds == newest_user_1
    assert list(timestamps.values[0].unix_timestamp_list_val.val)[0] == newest_user_1
    assert items.values[3].HasField("string_list_val")  # empty, but set


def test_a_request_plan_gives_each_view_its_own_replies_in_order():
    plan = RequestPlan()
    filled: List[Any] = []
    plan.add([("GET", b"a"), ("GET", b"b")], lambda replies, *flags: filled.append(("first", replies, flags)))
    plan.add([], lambda replies, *flags: filled.append(("empty", replies, flags)))
    plan.add([("GET", b"c")], lambda replies, *flags: filled.append(("last", replies, flags)))
    assert plan.commands == [("GET", b"a"), ("GET", b"b"), ("GET", b"c")]
    plan.populate([1, 2, 3], "response", True, False)
    assert filled == [
        ("first", [1, 2], ("response", True, False)),
        ("empty", [], ("response", True, False)),
        ("last", [3], ("response", True, False)),
    ]


#: A real repository config (no Redis is reached: planning reads only the project and the limit).
CONFIG = RepoConfig(
    project="proj",
    registry="registry.db",
    provider="feast_sequence.SequenceProvider",
    online_store=SequenceRedisOnlineStoreConfig(connection_string="127.0.0.1:6379", max_entities_per_request=2),
    entity_key_serialization_version=3,
)


def test_a_request_plans_each_sequence_views_unique_entities_into_one_pipeline():
    join_key_values = {"user_id": [ValueProto(int64_val=u) for u in (1, 2, 1)]}
    plan = plan_request(SequenceRedisOnlineStore(), CONFIG, [(VIEW, ["n"])], join_key_values, {"user": "user_id"})
    keys = [command[3] for command in plan.commands]
    prefix = view_prefix("proj", "clicks")
    assert keys == [sequence_keys(prefix, entity_key_bytes_from_values(_key(u)))[0] for u in (1, 2)]
    response = GetOnlineFeaturesResponse()
    plan.populate(_replies([1, 2]), response, False, False)
    assert [list(v.int32_list_val.val) for v in response.results[0].values] == [[3, 2, 1], [20, 10], [3, 2, 1]]


def test_a_request_over_max_entities_per_request_is_refused_naming_the_view():
    join_key_values = {"user_id": [ValueProto(int64_val=u) for u in (1, 2, 3)]}
    with pytest.raises(
        SequenceRequestError, match=r"3 entities of sequence view 'clicks' exceeds max_entities_per_request=2"
    ):
        plan_request(SequenceRedisOnlineStore(), CONFIG, [(VIEW, ["n"])], join_key_values, {"user": "user_id"})


def test_the_plan_cache_plans_each_view_definition_once():
    cache = PlanCache()
    assert cache.settings(VIEW) is cache.settings(VIEW)
    assert cache.settings(VIEW) == SETTINGS
    read = cache.sequence_read(VIEW, ["n"])
    assert cache.sequence_read(VIEW, ["n"]) is read and read.requested_names == ["n"]
    assert cache.sequence_read(VIEW, None).requested_names == ["item", "n", "ts"]
    # A registry refresh gives new view objects: the same definition is not parsed again, a changed
    # one is.
    assert cache.settings(copy.deepcopy(VIEW)) is cache.settings(VIEW)
    changed = click_view(max_length=7, ttl=timedelta(hours=1))
    assert cache.settings(changed).max_length == 7 and cache.settings(VIEW).max_length == 5
    assert cache.settings(click_view(max_length=5, ttl=timedelta(hours=2))).ttl_us == 2 * HOUR_US
    with pytest.raises(SequenceDefinitionError, match="price"):
        cache.sequence_read(VIEW, ["n", "price"])


def test_the_plan_cache_parses_a_use_case_once_per_definition_and_checks_it_against_its_views():
    cache = PlanCache()
    service = SequenceUseCase(name="recent", features=[VIEW[["item"]]], sequences={VIEW.name: SequenceSpec(length=3)})
    settings = cache.use_case(service)
    assert settings.spec(VIEW.name).length == 3
    # the same definition rebuilt (as a registry lookup rebuilds it) is the same entry
    assert cache.use_case(copy.copy(service)) is settings
    changed = SequenceUseCase(name="recent", features=[VIEW[["item"]]], sequences={VIEW.name: SequenceSpec(length=4)})
    assert cache.use_case(changed).spec(VIEW.name).length == 4
    cache.validate(settings, {VIEW.name: cache.settings(VIEW)})
    too_long = SequenceUseCase(name="long", features=[VIEW[["item"]]], sequences={VIEW.name: SequenceSpec(length=5)})
    shorter = click_view(max_length=2, ttl=timedelta(hours=1))
    for _ in range(2):  # a failed check is not cached: it fails again
        with pytest.raises(SequenceDefinitionError, match="length"):
            cache.validate(cache.use_case(too_long), {VIEW.name: cache.settings(shorter)})


def _block_replies(frame: pd.DataFrame, users: List[int]) -> List[Any]:
    """READ's reply per user with its stored events compacted into one block (no tail)."""
    events = encode_frame(SETTINGS, frame)
    by_user: Dict[bytes, List[Any]] = {}
    for key, score, member in zip(events.entity_keys, events.scores_us, events.members):
        by_user.setdefault(key, []).append((score, member))
    replies: List[Any] = []
    for user in users:
        stored = sorted(by_user.get(entity_key_bytes_from_values(_key(user)), []), reverse=True)[:5]
        if not stored:
            replies.append([None, []])
            continue
        block = blocks.encode(blocks.Events([s for s, _ in stored], [m for _, m in stored], [0] * len(stored)))
        replies.append([block, [], b"-inf", b"5"])
    return replies


@pytest.mark.parametrize("users", [3, 150])  # 150 users: more values than BULK_FROM, built with numpy
def test_a_plain_read_from_blocks_is_the_row_decode_and_the_same_again_from_the_kept_bytes(users):
    """Sequences served whole from one block are written from columns, and keep their bytes with the
    block; a second read (from those bytes) and the per-event decode give the same values."""
    rng = np.random.default_rng(7)
    count = users * 4
    frame = pd.DataFrame(
        {
            "user_id": rng.integers(1, users + 1, count),
            "item": [f"item_{i}" for i in rng.integers(0, 50, count)],
            "n": rng.integers(-(2**31), 2**31, count),
            "ts": pd.to_datetime(NOW_US - rng.integers(0, HOUR_US, count), unit="us", utc=True),
        }
    )
    ids = list(range(1, users + 2))  # the last one has no events
    replies = _block_replies(frame, ids)
    blocks.SHARED_BLOCKS.clear()
    read = plan_read(SETTINGS, ["ts", "item", "n"])
    rows = [[u] for u in range(len(ids))]
    responses = []
    for _ in range(2):
        response = GetOnlineFeaturesResponse()
        populate_sequences(read, VIEW, rows, len(ids), _commands(ids), replies, response, True, False)
        responses.append(response.SerializeToString())
    assert responses[0] == responses[1]
    expected = decode_rows(read, _commands(ids), replies)
    response = GetOnlineFeaturesResponse.FromString(responses[0])
    for vector, name in zip(response.results, read.requested_names):
        assert [v for v in vector.values] == [values[name] for _, values in expected]
    newest = [int(t.timestamp()) if t else 0 for t, _ in expected]  # 0: no events
    assert [t.seconds for t in response.results[0].event_timestamps] == newest
