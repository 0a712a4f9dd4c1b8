"""Definition changes as pure logic (storage/evolution.py), without Redis: which in-place changes
`feast apply` accepts over stored sequences, and that what it accepts keeps serving equal to the
offline replay (docs/concepts.md, "Definition changes")."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, List, Optional, Tuple

import pytest
from feast.value_type import ValueType
from hypothesis import given, settings
from hypothesis import strategies as st

from feast_sequence import SequenceDefinitionError
from feast_sequence.definitions.settings import EventField, SequenceSettings
from feast_sequence.storage import blocks
from feast_sequence.storage.codec import NULL_DEFAULTS, encode_columns, layout_for
from feast_sequence.storage.evolution import StoredDefinition, evolve, reencoded, widens

from reference import reference_sequences
from repos import click_settings

SECOND = 1_000_000
LENGTHS = st.integers(1, 6)
TTLS = st.one_of(st.none(), st.sampled_from([5 * SECOND, 20 * SECOND, 60 * SECOND]))


def record(**window) -> StoredDefinition:
    return evolve(None, click_settings(**window), applied_at_us=0)


@pytest.mark.parametrize(
    "before, after, problem",
    [
        (dict(max_length=5), dict(max_length=10), r"max_length rises from 5 to 10"),
        (dict(ttl_us=20 * SECOND), dict(ttl_us=3600 * SECOND), r"the TTL of 0:00:20 rises to 1:00:00"),
        (dict(ttl_us=20 * SECOND), dict(ttl_us=None), r"the TTL of 0:00:20 is removed"),
    ],
)
def test_widening_the_window_over_stored_sequences_is_refused_with_reindex(before, after, problem):
    with pytest.raises(SequenceDefinitionError, match=problem) as refused:
        evolve(record(**before), click_settings(**after), applied_at_us=1)
    message = str(refused.value)
    assert "\n" not in message
    assert "`feast-sequence reindex --repo <repo> --view clicks`" in message
    # Without stored sequences the same change is a fresh start.
    assert evolve(record(**before), click_settings(**after), applied_at_us=1, holds_sequences=False).max_length


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(LENGTHS, TTLS), min_size=1, max_size=8))
def test_accepted_windows_only_narrow_and_are_dated_when_they_change(windows):
    stored = record(max_length=windows[0][0], ttl_us=windows[0][1])
    for at, (max_length, ttl_us) in enumerate(windows[1:], start=1):
        new = click_settings(max_length=max_length, ttl_us=ttl_us)
        wider = max_length > stored.max_length or (
            stored.ttl_us is not None and (ttl_us is None or ttl_us > stored.ttl_us)
        )
        assert bool(widens(stored, new)) == wider
        if wider:
            with pytest.raises(SequenceDefinitionError):
                evolve(stored, new, applied_at_us=at)
            continue
        after = evolve(stored, new, applied_at_us=at)
        changed = (max_length, ttl_us) != (stored.max_length, stored.ttl_us)
        assert after.window_since_us == (at if changed else stored.window_since_us)
        assert StoredDefinition.from_json(after.to_json()) == after
        stored = after


# --- serving equals the offline replay across accepted changes -----------------------------------


class Model:
    """A sequence as the store keeps it, in memory: the tail (deduplicated and capped on its own,
    as the append script does), the block (what compaction wrote) and whole-key expiry."""

    def __init__(self, settings_: SequenceSettings):
        self.settings = settings_
        self.tail: Dict[bytes, Tuple[int, bytes]] = {}  # identity -> (score, member)
        self.block = blocks.EMPTY

    @property
    def layout(self) -> Any:
        return layout_for(self.settings)

    def events(self, rows: List[dict]) -> List[Tuple[int, bytes, bytes]]:
        defaults = {f.name: NULL_DEFAULTS[f.value_type] for f in self.layout.fields}
        columns = [[defaults[f.name] if r.get(f.name) is None else r[f.name] for r in rows] for f in self.layout.fields]
        members, identities = encode_columns(self.layout, columns, [r["timestamp_us"] for r in rows])
        keys = identities if identities is not None else members
        return [(r["timestamp_us"], m, k) for r, m, k in zip(rows, members, keys)]

    def push(self, rows: List[dict]) -> None:
        for score, member, identity in self.events(rows):
            old = self.tail.get(identity)
            if old is None or (score, member) > old:
                self.tail[identity] = (score, member)
        kept = sorted(self.tail.items(), key=lambda item: item[1], reverse=True)[: self.settings.max_length]
        self.tail = dict(kept)

    def tail_events(self) -> blocks.Events:
        ordered = sorted(self.tail.items(), key=lambda item: item[1], reverse=True)
        prefix = [len(identity) if self.layout.deduplicated else 0 for identity, _ in ordered]
        return blocks.Events([s for _, (s, _) in ordered], [m for _, (_, m) in ordered], prefix)

    def oldest(self, now_us: int) -> Optional[int]:
        return now_us - self.settings.ttl_us if self.settings.ttl_us else None

    def compact(self, now_us: int) -> None:
        self.block = blocks.merge(self.block, self.tail_events(), self.settings.max_length, self.oldest(now_us))
        self.tail = {}

    def reencode(self, now_us: int) -> None:
        """What `feast apply` does when fields change (compaction.rewrite): tail and block re-encoded
        under the current definition, into one block."""
        block, tail = reencoded(self.settings, self.block), reencoded(self.settings, self.tail_events())
        self.block = blocks.merge(block, tail, self.settings.max_length, self.oldest(now_us))
        self.tail = {}

    def expire(self, now_us: int) -> None:
        newest = max([s for s, _ in self.tail.values()] + self.block.scores[:1], default=None)
        if newest is not None and self.settings.ttl_us and newest + self.settings.ttl_us < now_us:
            self.tail, self.block = {}, blocks.EMPTY

    def read(self, now_us: int) -> List[bytes]:
        return blocks.merge(self.block, self.tail_events(), self.settings.max_length, self.oldest(now_us)).members


step = st.one_of(
    st.tuples(
        st.just("push"), st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 2), st.integers(0, 90)), max_size=4)
    ),
    st.tuples(st.just("compact"), st.none()),
    st.tuples(st.just("wait"), st.integers(1, 40)),
    st.tuples(st.just("apply"), st.tuples(LENGTHS, TTLS)),
    st.tuples(st.just("fields"), st.integers(0, 2)),
)
PRICE = EventField("price", ValueType.FLOAT)
#: The fields a definition may change to: n removed, price added (n cannot come back: its number
#: is retired, and apply refuses it).
FIELD_SETS = [
    (EventField("kind", ValueType.STRING), EventField("n", ValueType.INT32)),
    (EventField("kind", ValueType.STRING),),
    (EventField("kind", ValueType.STRING), PRICE, EventField("n", ValueType.INT32)),
]


@settings(max_examples=200, deadline=None)
@given(st.lists(step, max_size=25), st.booleans())
def test_what_apply_accepts_keeps_serving_equal_to_the_offline_replay(steps, deduplicated):
    """Pushes (late ones and re-sent ones too), compactions, time passing, window and field changes
    in any order: after each step the served sequence is what the offline replay of every event
    gives under the current definition, which is what training data at that time holds. An event
    carries the fields of the definition it was pushed under (the batch source has nulls for the
    others)."""
    current = click_settings(max_length=4, ttl_us=60 * SECOND, dedup_by=("kind",) if deduplicated else ())
    stored = evolve(None, current, applied_at_us=0)
    model, now, history = Model(current), 100 * SECOND, []
    for kind, arg in steps:
        if kind == "push":
            values = [{"kind": k, "n": n, "price": n / 2, "timestamp_us": now - age * SECOND} for k, n, age in arg]
            known = {f.name for f in current.fields} | {"timestamp_us"}
            rows = [{"entity": 1} | {name: v for name, v in row.items() if name in known} for row in values]
            history += rows
            model.push(rows)
        elif kind == "compact":
            model.compact(now)
        elif kind == "wait":
            now += arg * SECOND
        else:
            if kind == "apply":
                new = replace(current, max_length=arg[0], ttl_us=arg[1])
            else:
                new = replace(current, fields=FIELD_SETS[arg])
            try:
                before, stored = stored, evolve(stored, new, applied_at_us=now)
            except SequenceDefinitionError:
                continue
            current = model.settings = new
            if not before.encodes_like(stored):
                model.reencode(now)
        model.expire(now)
        want = reference_sequences(current, history, now_us=now).get(1, [])
        assert model.read(now) == [e for _, e, _ in model.events(want)]


# --- stored events re-encoded under changed fields -------------------------------------------------


def test_reencoded_events_have_the_bytes_the_new_definition_gives_them():
    old = click_settings(fields=(EventField("kind", ValueType.STRING), EventField("price", ValueType.FLOAT)))
    new = click_settings(fields=(EventField("n", ValueType.INT32), EventField("kind", ValueType.STRING)))
    times = [3 * SECOND, 2 * SECOND, 2 * SECOND + 5]
    members, _ = encode_columns(layout_for(old), [["a", "b", "c"], [1.5, 2.5, 0.0]], times)
    stored = blocks.Events(times, members, [0, 0, 0])
    expected_members, _ = encode_columns(layout_for(new), [[0, 0, 0], ["a", "b", "c"]], times)
    got = reencoded(new, stored)
    want = sorted(zip(times, expected_members), reverse=True)
    assert list(zip(got.scores, got.members)) == want


def test_events_that_differed_only_in_a_removed_field_become_one():
    old = click_settings(fields=(EventField("kind", ValueType.STRING), EventField("price", ValueType.FLOAT)))
    new = click_settings(fields=(EventField("kind", ValueType.STRING),))
    members, _ = encode_columns(layout_for(old), [["a", "a"], [1.5, 2.5]], [SECOND, SECOND])
    got = reencoded(new, blocks.Events([SECOND, SECOND], sorted(members, reverse=True), [0, 0]))
    assert got.members == encode_columns(layout_for(new), [["a"]], [SECOND])[0]
