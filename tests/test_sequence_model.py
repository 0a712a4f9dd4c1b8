"""Model-based test: every writer of a sequence interleaved at random, on a real Redis.

A hypothesis state machine whose rules are pushes (duplicates and late events included),
corrections (a time range replaced), the enrichment rewrite, compaction split into its SNAPSHOT and
its COMPACT (so other rules run between them), reads and training-data queries. The model is the
event log each view should hold; after every step what the store serves and what the offline
replay (offline/pit.py) gives for training equal the reference semantics (tests/reference.py) of
that log. A COMPACT with no write to its sequence since its SNAPSHOT must commit.

`make test` runs a bounded number of steps; `make soak` sets FEAST_SEQUENCE_SOAK_EXAMPLES for a
long run and prints the number of steps run.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Dict, List, Tuple

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from races import ENRICHED, VIEWS, Writers, as_served, frame, race_store

from feast_sequence.feast_internals import store_provider
from feast_sequence.offline.pit import EVENT_TIME_US, QUERY_TIME_US, ROW_ID, sequences_as_of
from feast_sequence.storage.compaction import COMPACTED

from reference import reference_sequences
from sample_repo import click_records

T0 = pd.Timestamp("2024-01-01", tz="UTC")
SECOND_US = 1_000_000
USERS = (0, 1)
ITEMS = ("a", "b", "c", "d", "é")
SECONDS = 16  # event times T0 + 0..15 s: ties, late events and overlapping corrections
MAX_LENGTH = 5  # short, so trimming meets every other writer

row = st.tuples(
    st.sampled_from(USERS),
    st.sampled_from(ITEMS),
    st.integers(0, 3),
    st.booleans(),
    st.integers(0, SECONDS - 1),
)
view_name = st.sampled_from(VIEWS)
users = st.sampled_from(USERS)
prices = st.fixed_dictionaries({item: st.sampled_from([2.5, 3.0, 7.25]) for item in ITEMS[:-1]})

Record = Dict[str, Any]


class SequenceModel(RuleBasedStateMachine):
    #: Steps run by every machine of this process (the soak run reports it).
    steps = 0

    def __init__(self, writers: Writers):
        super().__init__()
        self.writers = writers
        writers.client.flushall()
        self.log: Dict[str, List[Record]] = {view: [] for view in VIEWS}
        # Writes per sequence, to know whether a COMPACT had a reason to be refused.
        self.writes: Dict[Tuple[str, int], int] = {}
        self.snapshots: Dict[Tuple[str, int], Tuple[Any, int]] = {}
        # The price writers send with an item: the plain view's last enrichment table (docs/offline.md:
        # once a field is enriched, real-time writers send it too). So two events never differ by their
        # price alone: a rewrite that made them one would free a place in the plain view that an event
        # trimmed before fills in the model, not in the store (issue 22, identity after schema changes).
        self.prices: Dict[str, float] = {}

    def _events(self, rows: List[Any], at: Any = None) -> pd.DataFrame:
        """(user, item, n, flag, seconds) rows as events at T0 + seconds (or ``at(seconds)``)."""
        when = at or (lambda s: T0 + pd.Timedelta(seconds=s))
        return frame([(u, i, n, self.prices.get(i, 0.0), f, when(s)) for u, i, n, f, s in rows])

    def _wrote(self, view: str, user_id: int) -> None:
        self.writes[view, user_id] = self.writes.get((view, user_id), 0) + 1

    def _push(self, df: pd.DataFrame) -> None:
        self.writers.push(df)
        # The compactions the push left to the store's worker (compact_after > 0), done now: one
        # committed between a SNAPSHOT rule and its COMPACT would refuse that COMPACT with no write
        # of the model's in between. So the writers' compactions run at the push, as inline ones did.
        store_provider(self.writers.store).online_store.drain_compactions(timeout_seconds=30)
        for view in VIEWS:
            self.log[view] += click_records([df])
            for user_id in set(df["user_id"]):
                self._wrote(view, int(user_id))

    @rule(rows=st.lists(row, min_size=1, max_size=6))
    def push(self, rows: List[Any]) -> None:
        self._push(self._events(rows))

    @rule(data=st.data())
    def push_again(self, data: Any) -> None:
        """At-least-once delivery: events already pushed (enriched since, if the job ran) sent again."""
        log = self.log["plain"]
        if log:
            picked = data.draw(st.lists(st.sampled_from(log), min_size=1, max_size=4))
            self._push(_frame_of(picked))

    @rule(
        view=view_name,
        user_id=users,
        start=st.integers(0, SECONDS - 1),
        length=st.integers(0, 10),
        rows=st.lists(row, min_size=1, max_size=4),
    )
    def correct(self, view: str, user_id: int, start: int, length: int, rows: List[Any]) -> None:
        """The correction job for one entity: its events in [start, end] replaced by the source's, with
        the source's events before the range sent again (the job's LastN selection), which restores
        events the range's removed ones had trimmed."""
        first, last = T0 + pd.Timedelta(seconds=start), T0 + pd.Timedelta(seconds=start + length)
        new = self._events([(user_id, *r[1:]) for r in rows], lambda s: first + pd.Timedelta(seconds=s % (length + 1)))
        first_us, last_us = first.value // 1000, last.value // 1000
        mine = [e for e in self.log[view] if e["entity"] == user_id]
        kept = [e for e in self.log[view] if e["entity"] != user_id or not first_us <= e["timestamp_us"] <= last_us]
        before = [e for e in mine if e["timestamp_us"] < first_us]
        self.writers.correct(view, pd.concat([new, _frame_of(before)]), first, last)
        self.log[view] = kept + click_records([new])
        self._wrote(view, user_id)

    @rule(view=view_name, table=prices)
    def enrich(self, view: str, table: Dict[str, float]) -> None:
        self.writers.enrich(view, table)
        for event in self.log[view]:
            event[ENRICHED] = table.get(event["item"], 0.0)
        if view == "plain":
            self.prices = {item: table.get(item, 0.0) for item in ITEMS}
        for user_id in USERS:
            self._wrote(view, user_id)

    @rule(view=view_name, user_id=users)
    def snapshot(self, view: str, user_id: int) -> None:
        """A compactor's first step; its COMPACT is a rule of its own, so anything may run between."""
        self.snapshots[view, user_id] = (self.writers.snapshot(view, user_id), self.writes.get((view, user_id), 0))

    @precondition(lambda self: bool(self.snapshots))
    @rule(data=st.data())
    def compact(self, data: Any) -> None:
        view, user_id = data.draw(st.sampled_from(sorted(self.snapshots)))
        snapshot, writes = self.snapshots.pop((view, user_id))
        reply = self.writers.compact(view, user_id, snapshot)
        if reply is not None and writes == self.writes.get((view, user_id), 0):
            assert reply == COMPACTED, f"{view} {user_id}: nothing wrote to it since the snapshot, yet {reply}"
        self._wrote(view, user_id)

    @rule(view=view_name, user_id=users, at=st.integers(0, SECONDS))
    def training_query(self, view: str, user_id: int, at: int) -> None:
        """Training data as of a time within the events: the offline replay of the events before it."""
        query_us = (T0 + pd.Timedelta(seconds=at)).value // 1000
        self._check_training(view, user_id, query_us)

    # Definition changes (max_length, TTL, fields) are decided by issue 22's definition rules
    # (docs/concepts.md): add a rule here that applies one with `feast apply` and updates the model's
    # settings, so the reads and training queries below check it too.

    @invariant()
    def serves_and_trains_the_reference(self) -> None:
        SequenceModel.steps += 1
        for view in VIEWS:
            reference = reference_sequences(self.writers.settings[view], self.log[view])
            served = self.writers.served(view, USERS)
            for user_id in USERS:
                assert served[user_id] == as_served(reference.get(user_id, [])), f"served {view} {user_id}"
                self._check_training(view, user_id, (T0 + pd.Timedelta(seconds=SECONDS + 10)).value // 1000)

    def _check_training(self, view: str, user_id: int, query_us: int) -> None:
        settings_ = self.writers.settings[view]
        events = [e for e in self.log[view] if e["entity"] == user_id]
        table = pa.table(
            {
                "item": pa.array([e["item"] for e in events], pa.string()),
                "n": pa.array([e["n"] for e in events], pa.int32()),
                "price": pa.array([e["price"] for e in events], pa.float64()),
                "flag": pa.array([e["flag"] for e in events], pa.bool_()),
                EVENT_TIME_US: pa.array([e["timestamp_us"] for e in events], pa.int64()),
            }
        )
        queries = pa.table({ROW_ID: pa.array([0], pa.int64()), QUERY_TIME_US: pa.array([query_us], pa.int64())})
        (trained,) = sequences_as_of(
            settings_, ["item", "n", "price", "flag", EVENT_TIME_US], table, queries
        ).to_pylist()
        want = reference_sequences(settings_, [e for e in events if e["timestamp_us"] <= query_us]).get(user_id, [])
        got = list(zip(trained["item"], trained["n"], trained["price"], trained["flag"], trained[EVENT_TIME_US]))
        assert got == [(e["item"], e["n"], e["price"], e["flag"], e["timestamp_us"]) for e in want], (
            f"training {view} {user_id} at {query_us}"
        )


def _frame_of(events: List[Record]) -> pd.DataFrame:
    return frame(
        [
            (
                e["entity"],
                e["item"],
                e["n"],
                e["price"],
                e["flag"],
                pd.Timestamp(e["timestamp_us"], unit="us", tz="UTC"),
            )
            for e in events
        ]
    )


def run_settings() -> settings:
    """Bounded for `make test`; FEAST_SEQUENCE_SOAK_EXAMPLES (set by `make soak`) for the long run."""
    soak = os.environ.get("FEAST_SEQUENCE_SOAK_EXAMPLES")
    return settings(
        max_examples=int(soak) if soak else 8,
        stateful_step_count=60 if soak else 25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@pytest.mark.parametrize("compact_after", [0, 3], ids=["compactor-only", "writers-compact-too"])
def test_every_interleaving_of_the_writers_serves_and_trains_the_reference(
    tmp_path, redis_server, compact_after, capsys
):
    store = race_store(
        tmp_path / uuid.uuid4().hex[:8], redis_server.connection_string, MAX_LENGTH, compact_after=compact_after
    )
    writers = Writers(store)
    before = SequenceModel.steps
    run_state_machine_as_test(lambda: SequenceModel(writers), settings=run_settings())
    with capsys.disabled():
        steps = SequenceModel.steps - before
        print(f"\nmodel steps run without a counterexample (compact_after={compact_after}): {steps}")
