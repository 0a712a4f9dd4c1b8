"""`feast-sequence verify` on a real Redis: it finds corrupt blocks, blocks whose header does not
match their body, and identity hash entries pointing nowhere, names the entity and key of each,
and with --repair (real Spark) rebuilds exactly those entities from the offline source."""

from __future__ import annotations

from datetime import datetime, timezone

from integrity_repo import frame, views
from old_blocks import old_format

from feast_sequence import cli, sequence_settings
from feast_sequence.feast_internals import store_provider
from feast_sequence.storage.integrity import sequence_problems
from feast_sequence.storage.levels import Stored
from feast_sequence.transformations.verify import run_verify

from conftest import redis_state, replay
from repos import applied_store, click_settings, sequence_online


def _key(store_project, view, user, kind):
    return f"fsq:{store_project}:{view}:{{i\x01{user}}}:{kind}".encode()


def test_verify_reports_each_problem_naming_view_entity_and_key(tmp_path, redis_server, redis_client, capsys):
    repo = tmp_path / "repo"
    store = applied_store(repo, "verify", sequence_online(redis_server.connection_string), views(repo))
    store.push("clicks_push", frame([1, 2, 3, 4]))
    online = store_provider(store).online_store
    for name in ("plain", "dedup"):
        online.compact_sequence_view(store.config, sequence_settings(store.get_feature_view(name)))
    store.push("clicks_push", frame([4], events=3).assign(item=["late0", "late1", "late2"]))  # a tail again
    assert run_verify(str(repo)) == []

    block = _key("verify", "plain", 2, "c")
    damaged = bytearray(redis_client.get(block))
    damaged[len(damaged) // 2] ^= 0x01
    redis_client.set(block, bytes(damaged))
    # A format 3 block (no checksum) whose header claims one event less than its body holds.
    old = _key("verify", "plain", 3, "c")
    stored = old_format(redis_client.get(old), 3)
    newest, count, rest = stored[1:].split(b":", 2)
    redis_client.set(old, b"\x03" + newest + b":" + str(int(count) - 1).encode() + b":" + rest)
    redis_client.hset(_key("verify", "dedup", 4, "h"), b"\x0a\x05ghost", 123)

    findings = run_verify(str(repo))
    got = sorted((f.view, f.entity["user_id"], f.key[-1:], f.problem.split(":")[0]) for f in findings)
    assert got == [
        ("dedup", 4, b"z", "identity hash"),
        ("plain", 2, b"z", "block"),
        ("plain", 3, b"z", "block"),
    ]
    problems = {f.entity["user_id"]: f.problem for f in findings}
    assert "checksum mismatch" in problems[2]
    assert "member lengths do not add up" in problems[3] or "header says" in problems[3]
    assert "b'\\n\\x05ghost' (score 123) points to no tail event" in problems[4]
    assert cli.main(["verify", "--repo", str(repo), "--view", "plain"]) == 1
    out = capsys.readouterr().out
    assert "[feast-sequence verify] plain: 2 problem(s) in 2 stored sequence(s)" in out
    assert "plain user_id=2 (b'fsq:verify:plain:{i\\x012}:z'): block: block checksum mismatch" in out


def test_a_tail_event_without_its_identity_entry_is_found():
    settings = click_settings(dedup_by=("kind",))
    member = b"\x8a\x01\x03buy"  # any member: its identity is its first element
    assert sequence_problems(settings, Stored(), [member, b"5"], []) == [
        "identity hash: tail event b'\\x8a\\x01\\x03buy' (score 5) has no entry"
    ]
    assert sequence_problems(settings, Stored(), [member, b"5"], [member, b"5"]) == []


def test_verify_repair_rebuilds_the_corrupt_sequences_from_the_offline_source(
    retail_store, retail_events, redis_client
):
    repo = str(retail_store.repo_path)
    purchases = retail_events.purchases
    some = purchases[purchases["customer_id"].isin(purchases["customer_id"].drop_duplicates().head(30))]
    replay(retail_store, some, "purchase_push")  # some customers' events of the source, pushed
    online = store_provider(retail_store).online_store
    settings = sequence_settings(retail_store.get_feature_view("customer_purchases"))
    assert online.compact_sequence_view(retail_store.config, settings) > 0
    truth = redis_state(redis_client, retail_store)
    blocks = sorted(k for k in redis_client.scan_iter(b"fsq:retail:customer_purchases:{*}:c"))[:2]
    for key in blocks:
        damaged = bytearray(redis_client.get(key))
        damaged[20] ^= 0x40
        redis_client.set(key, bytes(damaged))
    assert len(run_verify(repo, "customer_purchases")) == 2

    repaired = run_verify(repo, "customer_purchases", repair=True, end=datetime(2012, 1, 1, tzinfo=timezone.utc))
    assert sorted(f.key[:-1] for f in repaired) == sorted(k[:-1] for k in blocks)
    assert run_verify(repo, "customer_purchases") == []
    assert redis_state(redis_client, retail_store) == truth
