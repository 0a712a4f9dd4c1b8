"""A compaction racing the other writers of a sequence (issue 22, cases 1 and 2): its COMPACT commits
only if nothing wrote to the sequence since its SNAPSHOT, so what is served is what the writers
meant, never a mix of the compactor's stale copy and their changes."""

from __future__ import annotations

import threading
import time
import uuid

import pandas as pd
import pytest
from feast import FeatureStore
from races import VIEWS, Writers, as_served, frame, race_store

from feast_sequence.feast_internals import store_provider
from feast_sequence.storage.compaction import CHANGED, COMPACTED

from reference import reference_sequences
from repos import wait_until
from sample_repo import click_records

T0 = pd.Timestamp("2024-01-01", tz="UTC")
SECOND = pd.Timedelta(seconds=1)


@pytest.fixture
def writers(tmp_path, redis_server, redis_client):
    redis_client.flushall()
    # compact_after 0: only the test's own SNAPSHOT and COMPACT compact, at the points it chooses.
    return Writers(race_store(tmp_path / uuid.uuid4().hex[:8], redis_server.connection_string, 10, compact_after=0))


def expected(writers, view, events):
    return as_served(reference_sequences(writers.settings[view], click_records([events])).get(1, []))


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


WINDOWS, CORRECTIONS, USERS = 4, 12, (0, 1, 2, 3)


def _window(w):
    return T0 + 10 * w * SECOND, T0 + (10 * w + 9) * SECOND


def _generation(gen, w):
    """Generation ``gen``'s events of window ``w`` for every user: gen 0 is pushed, each later one is a
    correction of the window. The item names the generation, so a reader can tell a removed one."""
    start, _ = _window(w)
    count = 5 if gen == 0 else 3
    return frame(
        [
            (u, f"g{gen}-w{w}-{j}", gen, 1.0, False, start + (2 * j + gen % 2) * SECOND)
            for u in USERS
            for j in range(count)
        ]
    )


def _price(item):
    return float(sum(item.encode()) % 97)


def test_compactor_corrections_enrichment_and_readers_at_once(tmp_path, redis_server, redis_client):
    """Threads on a real Redis: a compactor in a loop, corrections of one window after another, the
    enrichment rewrite in a loop and two readers. No read serves an event twice (a rewritten event next
    to its original) or one a finished correction removed; the final state is the reference's."""
    redis_client.flushall()
    store = race_store(tmp_path / uuid.uuid4().hex[:8], redis_server.connection_string, 200, compact_after=4)
    writers = Writers(store)
    for w in range(WINDOWS):
        writers.push(_generation(0, w))
    items = [f"g{g}-w{w}-{j}" for g in range(CORRECTIONS + 1) for w in range(WINDOWS) for j in range(5)]
    prices = {item: _price(item) for item in items}
    done = threading.Event()
    lock = threading.Lock()
    finished = {view: [0] * WINDOWS for view in VIEWS}  # the newest finished correction of each window
    violations, errors, counts = [], [], {"reads": 0, "compacted": 0, "enrichments": 0}
    online = store_provider(store).online_store

    def guarded(work):
        def run():
            try:
                work()
            except Exception as exc:  # re-raised in the test thread
                errors.append(exc)
                done.set()

        return threading.Thread(target=run)

    def correct():
        for i in range(CORRECTIONS):
            w, gen = i % WINDOWS, i + 1
            for view in VIEWS:
                writers.correct(view, _generation(gen, w), *_window(w))
                with lock:
                    finished[view][w] = gen
            time.sleep(0.05)
        # The others keep racing until each has done its share (asserted below): on a loaded
        # machine the corrections could end before the readers had read ten times.
        wait_until(
            lambda: counts["reads"] > 10 and counts["compacted"] > 0 and counts["enrichments"] > 0,
            120,
            "the readers, the compactor and the enrichment to run alongside the corrections",
        )
        done.set()

    def compact():
        # A pause between passes, as `feast-sequence compact --every` has: a compactor in a tight loop
        # can keep re-compacting the sequences the enrichment job moves back, until the job gives up.
        while not done.is_set():
            for view in VIEWS:
                counts["compacted"] += online.compact_sequence_view(store.config, writers.settings[view])
            time.sleep(0.01)

    def enrich():
        while not done.is_set():
            for view in VIEWS:
                writers.enrich(view, prices)
            counts["enrichments"] += 1

    def read():
        reader = Writers(FeatureStore(repo_path=str(store.repo_path)))
        while not done.is_set():
            for view in VIEWS:
                with lock:
                    floor = list(finished[view])
                for user_id, events in reader.served(view, USERS).items():
                    ids = [e[0] if view == "dedup" else (e[0], e[4]) for e in events]
                    if len(set(ids)) != len(ids):
                        violations.append(("duplicate", view, user_id, events))
                    for item, *_ in events:
                        gen, w = (int(part[1:]) for part in item.split("-")[:2])
                        if gen < floor[w]:
                            violations.append(("resurrected", view, user_id, item, floor[w]))
                counts["reads"] += 1

    threads = [guarded(f) for f in (correct, compact, enrich, read, read)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    assert violations == []
    assert counts["reads"] > 10 and counts["compacted"] > 0 and counts["enrichments"] > 0, counts

    for view in VIEWS:
        writers.enrich(view, prices)
        online.compact_sequence_view(store.config, writers.settings[view])
    latest = {w: max([0] + [i + 1 for i in range(CORRECTIONS) if i % WINDOWS == w]) for w in range(WINDOWS)}
    final = pd.concat([_generation(latest[w], w) for w in range(WINDOWS)])
    final = final.assign(price=final["item"].map(prices))
    for view in VIEWS:
        reference = reference_sequences(writers.settings[view], click_records([final]))
        assert writers.served(view, USERS) == {u: as_served(reference.get(u, [])) for u in USERS}
