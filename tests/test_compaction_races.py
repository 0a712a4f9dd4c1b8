"""A compaction racing the other writers of a sequence (issue 22, cases 1 and 2): its COMPACT commits
only if nothing wrote to the sequence since its SNAPSHOT, so what is served is what the writers
meant, never a mix of the compactor's stale copy and their changes."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest
from races import VIEWS, Writers, as_served, frame, race_store, records

from feast_sequence.storage.compaction import CHANGED, COMPACTED

from reference import reference_sequences

T0 = pd.Timestamp("2024-01-01", tz="UTC")
SECOND = pd.Timedelta(seconds=1)


@pytest.fixture
def writers(tmp_path, redis_server, redis_client):
    redis_client.flushall()
    # compact_after 0: only the test's own SNAPSHOT and COMPACT compact, at the points it chooses.
    return Writers(race_store(tmp_path / uuid.uuid4().hex[:8], redis_server.connection_string, 10, compact_after=0))


def expected(writers, view, events):
    return as_served(reference_sequences(writers.settings[view], records(events)).get(1, []))


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("with_block", [False, True], ids=["tail-only", "block-and-tail"])
def test_a_compaction_racing_a_correction_does_not_bring_back_what_it_removed(writers, view, with_block):
    pushed = frame([(1, f"i{k}", k, 1.0, False, T0 + k * SECOND) for k in range(8)])
    if with_block:
        writers.push(pushed.iloc[:5])
        assert writers.compact(view, 1, writers.snapshot(view, 1)) == COMPACTED
        writers.push(pushed.iloc[5:])
    else:
        writers.push(pushed)
    snapshot = writers.snapshot(view, 1)
    correction = frame([(1, "fixed", 100, 2.0, True, T0 + 4 * SECOND)])
    writers.correct(view, correction, T0 + 3 * SECOND, T0 + 6 * SECOND)

    assert writers.compact(view, 1, snapshot) == CHANGED
    kept = pushed[(pushed["ts"] < T0 + 3 * SECOND) | (pushed["ts"] > T0 + 6 * SECOND)]
    want = expected(writers, view, pd.concat([kept, correction]))
    assert writers.served(view, [1])[1] == want
    # and the next compaction, from a fresh snapshot, commits and changes no answer
    assert writers.compact(view, 1, writers.snapshot(view, 1)) == COMPACTED
    assert writers.served(view, [1])[1] == want


@pytest.mark.parametrize("view", VIEWS)
def test_a_compaction_racing_the_enrichment_rewrite_duplicates_nothing(writers, view):
    prices = {f"i{k}": 10.0 + k for k in range(7)}
    # Two events already carry their enriched price (the rewrite leaves them as they are), five do not.
    pushed = frame([(1, f"i{k}", k, prices[f"i{k}"] if k < 2 else 1.0, False, T0 + k * SECOND) for k in range(7)])
    writers.push(pushed)
    snapshot = writers.snapshot(view, 1)
    assert writers.enrich(view, prices)["rewritten"] == 5

    assert writers.compact(view, 1, snapshot) == CHANGED
    want = expected(writers, view, pushed.assign(price=pushed["item"].map(prices)))
    assert len(want) == 7 and writers.served(view, [1])[1] == want


def test_a_compaction_commits_when_nothing_changed_and_its_version_token_goes(writers, redis_client):
    writers.push(frame([(1, f"i{k}", k, 1.0, False, T0 + k * SECOND) for k in range(3)]))
    first, second = writers.snapshot("plain", 1), writers.snapshot("plain", 1)
    assert first[2] == second[2]  # two readers of one state share its version: the first to commit wins
    assert writers.compact("plain", 1, first) == COMPACTED
    assert writers.compact("plain", 1, second) == CHANGED
    assert not redis_client.keys("*}:v")  # no token is stored once no writer is between read and commit
