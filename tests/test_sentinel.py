"""Sentinel and replica acknowledgements: pushes and reads through Sentinel, failovers in the middle
of a push stream, and writes that wait for replicas (``min_replica_acks``). Each test starts its own
master, replica and three sentinels on loopback (docs/replication.md).

``python tests/test_sentinel.py`` measures what waiting for a replica costs a push (not a test).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pandas as pd
import pytest
import redis
from feast import FeatureStore

from feast_sequence import SequenceStoreUnavailableError
from feast_sequence.feast_internals import store_provider
from feast_sequence.storage.redis_io import NO_ACKS, ReplicaAcks
from feast_sequence.testing.local_redis import LocalRedis, free_port

from conftest import has_failed, redis_state, store_on
from repos import reopened, sequence_online, wait_until, write_repo
from sample_repo import assert_clicks_match_reference, batches, proto_rows

MASTER_NAME = "fsq"
#: Short enough that a failover completes in a few seconds, long enough that a busy 2-CPU machine
#: does not look like a dead master. Sentinel pings once a second: at 1000 ms a just-promoted master
#: whose first reply came late was failed over again a second later (2 of 20 runs, sentinel logs).
DOWN_AFTER_MS = 3000
FAILOVER_TIMEOUT_MS = 3000
TIMEOUTS = "socket_timeout=2,socket_connect_timeout=0.5"
SHORTFALL = r"Only 0 of the 1 replica\(s\) required by min_replica_acks acknowledged"


@dataclass
class SentinelGroup:
    """A master, its replica and three sentinels watching them, all on loopback."""

    servers: List[LocalRedis]
    sentinel_ports: List[int]
    sentinels: List[subprocess.Popen] = field(default_factory=list)
    retired: List[LocalRedis] = field(default_factory=list)  # crashed servers, kept for their logs
    keep_logs: bool = False  # set when the test failed: the logs outlive the group

    @property
    def connection_string(self) -> str:
        """Feast's ``connection_string`` for ``redis_type: redis_sentinel``: the sentinels."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def online_options(self, **extra: Any) -> Dict[str, Any]:
        """The ``online_store`` options that reach Redis through these sentinels, plus ``extra``."""
        return {"redis_type": "redis_sentinel", "sentinel_master": MASTER_NAME, **extra}

    def master_ports(self, sentinel_ports: Optional[List[int]] = None) -> List[Optional[int]]:
        """The master's port according to each sentinel (None where one does not answer)."""
        ports: List[Optional[int]] = []
        for port in sentinel_ports or self.sentinel_ports:
            try:
                with redis.Redis(port=port, socket_timeout=1) as sentinel:
                    ports.append(int(sentinel.sentinel_get_master_addr_by_name(MASTER_NAME)[1]))
            except redis.RedisError:
                ports.append(None)
        return ports

    def server(self, port: int) -> LocalRedis:
        return next(s for s in self.servers if s.port == port)

    def agreed_master(self, timeout_seconds: float = 60) -> LocalRedis:
        """The server every sentinel names as the master, once they agree (after any failover)."""
        agreed: List[Optional[int]] = []

        def agree() -> bool:
            agreed[:] = self.master_ports()
            return len(set(agreed)) == 1 and agreed[0] in {s.port for s in self.servers}

        wait_until(agree, timeout_seconds, "the sentinels to agree on a master")
        return self.server(int(agreed[0] or 0))

    def wait_for_master(
        self, port: int, sentinel_ports: Optional[List[int]] = None, timeout_seconds: float = 30
    ) -> None:
        """Until the sentinels (default: all) name ``port`` as the master: a failover completed."""
        wait_until(
            lambda: set(self.master_ports(sentinel_ports)) == {port},
            timeout_seconds,
            f"the sentinels to switch to port {port}",
        )

    def rejoin_as_replica(self, old: LocalRedis, master_port: int) -> LocalRedis:
        """Restart a crashed server, on its port, as a replica of the new master, as an operator
        would: restarted as a master, it would come back empty and wait for Sentinel to demote it."""
        self.servers.remove(old)
        old.stop()
        self.retired.append(old)
        rejoined = LocalRedis(port=old.port, replica_of=master_port).start()
        self.servers.append(rejoined)
        return rejoined.wait_until_replicating()


@contextlib.contextmanager
def sentinel_group() -> Iterator[SentinelGroup]:
    directory = Path(tempfile.mkdtemp(prefix="feast-sequence-sentinel-"))
    group = SentinelGroup(servers=[], sentinel_ports=[free_port() for _ in range(3)])
    failed = True
    try:
        master = LocalRedis().start()
        group.servers.append(master)
        group.servers.append(LocalRedis(replica_of=master.port).start().wait_until_replicating())
        for i, port in enumerate(group.sentinel_ports):
            conf = directory / f"sentinel-{i}.conf"  # Sentinel rewrites its file: one each
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\nlogfile {directory}/sentinel-{i}.log\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            )
            group.sentinels.append(
                subprocess.Popen(
                    [shutil.which("redis-server") or "redis-server", str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        _wait_until_sentinels_agree(group)
        yield group
        failed = group.keep_logs
    finally:
        for process in group.sentinels:
            process.terminate()
        for process in group.sentinels:
            process.wait(timeout=10)
        for server in group.servers + group.retired:
            server.close(keep_log=failed)
        if failed:
            print(f"sentinel logs kept in {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)


def _wait_until_sentinels_agree(group: SentinelGroup, timeout_seconds: float = 30) -> None:
    """Every sentinel knows the replica and the two other sentinels (they meet through the master
    every 2 s): only then can they agree that the master is down and elect one to fail it over."""
    wait_until(
        lambda: all(_knows_its_peers(port) for port in group.sentinel_ports),
        timeout_seconds,
        "the sentinels to discover each other",
    )


def _knows_its_peers(sentinel_port: int) -> bool:
    try:
        with redis.Redis(port=sentinel_port, socket_timeout=1) as sentinel:
            replicas = sentinel.sentinel_slaves(MASTER_NAME)
            return len(replicas) == 1 and len(sentinel.sentinel_sentinels(MASTER_NAME)) == 2
    except redis.RedisError:
        return False


@pytest.fixture
def group(request) -> Iterator[SentinelGroup]:
    with sentinel_group() as g:
        yield g
        g.keep_logs = has_failed(request.node)


def push_until_written(store: FeatureStore, frame: pd.DataFrame, failures: List[str], seconds: float = 60):
    """At-least-once delivery, as a client would do it: re-send a push until it is acknowledged."""

    def written() -> bool:
        try:
            store.push("clicks_push", frame)
            return True
        except SequenceStoreUnavailableError as exc:
            failures.append(str(exc))
            return False

    try:
        wait_until(written, seconds, "a push to be written")
    except AssertionError as timeout:
        raise AssertionError(f"{timeout}; the last error: {failures[-1] if failures else None}") from None


def fresh(store: FeatureStore) -> FeatureStore:
    """The same repository with a new client, which asks the sentinels where the master is now."""
    return FeatureStore(repo_path=str(store.repo_path))


# --- through Sentinel ---------------------------------------------------------------------------


def test_pushes_and_reads_go_through_sentinel(group, tmp_path):
    store = store_on(tmp_path, f"{group.connection_string},{TIMEOUTS}", **group.online_options(min_replica_acks=1))
    master, replica = group.servers
    frames = batches(10, 40, seed=11)
    for frame in frames[:5]:
        store.push("clicks_push", frame)
    assert_clicks_match_reference(store, frames[:5], users=20)
    # Acknowledged by the replica (WAIT), so it already holds every acknowledged event; the
    # compactions the pushes left to the store's worker are acknowledged too, once drained.
    store_provider(store).online_store.drain_compactions(timeout_seconds=30)
    assert redis_state(replica.client()) == redis_state(master.client()) != {}

    master.client().script_flush()  # the NOSCRIPT path: scripts reloaded, pipeline and WAIT resent
    store.push("clicks_push", frames[5])

    async def push_and_read_async():
        for frame in frames[6:]:
            await store.push_async("clicks_push", frame)
        return await store.get_online_features_async(
            features=["clicks:item"], entity_rows=[{"user_id": u} for u in range(20)]
        )

    served_async = asyncio.run(push_and_read_async()).to_dict()
    served = store.get_online_features(
        features=["clicks:item"], entity_rows=[{"user_id": u} for u in range(20)]
    ).to_dict()
    assert served_async["item"] == served["item"]
    assert_clicks_match_reference(store, frames, users=20)
    store_provider(store).online_store.drain_compactions(timeout_seconds=30)
    assert redis_state(replica.client()) == redis_state(master.client())


# --- waiting for replicas -----------------------------------------------------------------------


def test_replica_acks_end_the_pipeline_with_wait():
    acks = ReplicaAcks(replicas=1, timeout_ms=50)
    assert acks.planned([("PING",)]) == [("PING",), ("WAIT", 1, 50)]
    assert acks.checked([b"PONG", 1]) == [b"PONG"]
    assert NO_ACKS.planned([("PING",)]) == [("PING",)] and NO_ACKS.checked([b"PONG"]) == [b"PONG"]
    assert ReplicaAcks(2, 50).planned([]) == []  # nothing written, nothing to wait for


def _writers(store: FeatureStore, frame: pd.DataFrame, loop: asyncio.AbstractEventLoop) -> dict:
    """Every write path of the store, each writing ``frame`` to the click views. The async paths run
    on ``loop``: the store's async client belongs to the loop it was made on."""
    from feast_sequence import sequence_settings
    from feast_sequence.feast_internals import store_provider
    from feast_sequence.offline.indexing import IndexTarget, write_local

    online = store_provider(store).online_store
    views = [store.get_feature_view(name) for name in ("clicks", "clicks_dedup")]
    rows = proto_rows(frame)

    def write_batch() -> None:
        for view in views:
            online.online_write_batch(store.config, view, rows, None)

    async def write_batch_async() -> None:
        for view in views:
            await online.online_write_batch_async(store.config, view, rows, None)

    def write_frames() -> None:
        for view in views:
            target = IndexTarget(store.config.online_store, store.project, sequence_settings(view))
            write_local(target, frame)

    return {
        "push (write_events)": lambda: store.push("clicks_push", frame),
        "push_async (write_events_async)": lambda: loop.run_until_complete(store.push_async("clicks_push", frame)),
        "online_write_batch": write_batch,
        "online_write_batch_async": lambda: loop.run_until_complete(write_batch_async()),
        "write_frames (offline jobs, materialize)": write_frames,
    }


def _wait_calls(server: LocalRedis) -> int:
    """How many ``WAIT`` commands the server ran since its statistics were last reset."""
    return int(server.client().info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


def test_too_few_replica_acks_raise_the_retriable_error_on_every_write_path(tmp_path):
    with LocalRedis() as server:  # a master without replicas: WAIT 1 can only time out
        # Applied first without the acknowledgements: `feast apply` waits for them too.
        applied = store_on(tmp_path, f"{server.connection_string},{TIMEOUTS}")
        store = reopened(applied, min_replica_acks=1, replica_ack_timeout_ms=50, retries=2, retry_backoff_seconds=0.01)
        frame = batches(1, 30, seed=13)[0]
        loop = asyncio.new_event_loop()
        try:
            for path, write in _writers(store, frame, loop).items():
                server.client().config_resetstat()
                with pytest.raises(SequenceStoreUnavailableError, match=SHORTFALL + r".*\(3 attempt\(s\)\)"):
                    write()
                assert _wait_calls(server) >= 3, path  # waited for acknowledgements, three times at least
        finally:
            loop.close()
        # The master applied the writes (WAIT cannot undo them); all paths wrote the same events,
        # and appends are idempotent, so the state is that of one write.
        assert_clicks_match_reference(store, [frame], users=20)


def test_a_refusal_by_min_replicas_to_write_is_retriable(tmp_path):
    """Redis's own guard (the master refuses writes while too few replicas are connected) is
    reported as retriable, like a shortfall, and leaves nothing written."""
    with LocalRedis() as server:
        store = store_on(tmp_path, server.connection_string, retries=1, retry_backoff_seconds=0.01)
        # Switched on after `feast apply`, which it would refuse too (the definition record is a write).
        server.client().config_set("min-replicas-to-write", 1)
        with pytest.raises(
            SequenceStoreUnavailableError,
            match=r"refused the write.*\(2 attempt\(s\)\).*min-replicas-to-write",
        ):
            store.push("clicks_push", batches(1, 10, seed=15)[0])
        assert redis_state(server.client()) == {}


def test_replica_ack_settings_are_checked(tmp_path):
    from feast.repo_config import FeastConfigError, load_repo_config

    cases: List[Tuple[Dict[str, Any], str]] = [
        ({"min_replica_acks": -1}, "min_replica_acks"),
        ({"redis_type": "redis_cluster", "min_replica_acks": 1}, "not supported with redis_type: redis_cluster"),
        ({"min_replica_acks": 1, "replica_ack_timeout_ms": 0}, "replica_ack_timeout_ms"),
    ]
    for options, message in cases:
        write_repo(tmp_path, "p", sequence_online("127.0.0.1:6379", **options))
        with pytest.raises(FeastConfigError, match=message):
            load_repo_config(tmp_path, tmp_path / "feature_store.yaml")
    write_repo(tmp_path, "p", sequence_online("127.0.0.1:6379,socket_timeout=0.5", min_replica_acks=1))
    with pytest.raises(FeastConfigError, match="replica_ack_timeout_ms=1000 must be shorter than socket_"):
        load_repo_config(tmp_path, tmp_path / "feature_store.yaml")


# --- failovers ----------------------------------------------------------------------------------


def test_master_killed_in_a_push_stream_loses_no_event_with_replica_acks(group, tmp_path):
    store = store_on(
        tmp_path,
        f"{group.connection_string},{TIMEOUTS}",
        **group.online_options(min_replica_acks=1, replica_ack_timeout_ms=500, retries=3),
    )
    old, new = group.servers
    frames = batches(60, 40, seed=12)
    failures: List[str] = []
    operator_errors: List[BaseException] = []

    def rejoin() -> None:  # the operator's part: bring the crashed server back as a replica
        try:
            group.wait_for_master(new.port)
            group.rejoin_as_replica(old, new.port)
        except BaseException as exc:  # reported by the test thread below
            operator_errors.append(exc)

    operator = threading.Thread(target=rejoin)
    started = time.monotonic()
    for k, frame in enumerate(frames):
        if k == 20:
            old.kill()  # SIGKILL, in the middle of the stream; the sentinels promote the replica
            operator.start()
        push_until_written(store, frame, failures)
    operator.join(timeout=120)
    shortfalls = sum("min_replica_acks" in f for f in failures)
    print(
        f"60 pushes in {time.monotonic() - started:.1f} s; {len(failures)} raised and were re-sent "
        f"({shortfalls} for too few replica acknowledgements)"
    )

    assert not operator_errors and not operator.is_alive(), operator_errors
    assert failures, "the failover should have interrupted the stream"
    # Every push was acknowledged by a replica before it counted as written, so all 2,400 events
    # are on the master, read here through a client that asks the sentinels afresh.
    assert_clicks_match_reference(fresh(store), frames, users=20)
    # The new master, unless a slow machine made the sentinels fail over once more (to the rejoined
    # server): a replica acknowledged every push, so that loses nothing either.
    master = group.agreed_master()
    replica = next(s for s in group.servers if s is not master)
    # The compactions the pushes left to the store's worker, done before the replica catches up: one
    # committed after that would trim the master's sequences alone (redis_state reads every event).
    store_provider(store).online_store.drain_compactions(timeout_seconds=30)
    replica.wait_until_replicating()  # it has every write the master has
    assert redis_state(master.client()) == redis_state(replica.client())


def test_graceful_failover_loses_an_acknowledged_push_unless_it_waits_for_a_replica(group, tmp_path):
    """After ``SENTINEL FAILOVER`` the old master keeps accepting writes from connected clients until
    Sentinel demotes it (about 8 to 18 s later) and it resyncs from the new master: writes it
    acknowledged in between are lost. With ``min_replica_acks: 1`` it cannot acknowledge them (no
    replica follows it any more), so the client re-sends them until they reach the new master."""
    connection = f"{group.connection_string},{TIMEOUTS}"
    plain = store_on(tmp_path, connection, **group.online_options())
    safe = store_on(tmp_path, connection, **group.online_options(min_replica_acks=1, replica_ack_timeout_ms=200))
    old, new = group.servers
    before, during = batches(2, 40, seed=14)
    for store in (plain, safe):
        store.push("clicks_push", before)

    with redis.Redis(port=group.sentinel_ports[0]) as sentinel:
        sentinel.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)  # no master crash, no vote
    group.wait_for_master(new.port, group.sentinel_ports[:1])  # the sentinel that did it
    assert old.client().info("replication")["role"] == "master"  # not demoted yet

    plain.push("clicks_push", during)  # acknowledged by the old master
    with pytest.raises(SequenceStoreUnavailableError, match=SHORTFALL):
        safe.push("clicks_push", during)
    failures: List[str] = []
    started = time.monotonic()
    push_until_written(safe, during, failures)  # succeeds once the old master follows the new one
    print(f"re-sent {len(failures)} time(s) over {time.monotonic() - started:.1f} s")

    assert old.client().info("replication")["role"] == "slave"
    assert_clicks_match_reference(fresh(plain), [before], users=20)  # `during` was lost
    assert_clicks_match_reference(fresh(safe), [before, during], users=20)


# --- the cost of waiting (python tests/test_sentinel.py) ----------------------------------------


def _push_ms(store: FeatureStore, frame: pd.DataFrame) -> float:
    start = time.perf_counter()
    store.push("clicks_push", frame)
    return (time.perf_counter() - start) * 1000


def _measure_one_pipeline(store: FeatureStore, master: LocalRedis, repeats: int) -> None:
    """The append pipeline of one 1-event view write alone, without Feast's push overhead."""
    from feast_sequence import sequence_settings
    from feast_sequence.storage.append import encode_frame, plan_append
    from feast_sequence.storage.redis_io import execute

    settings = sequence_settings(store.get_feature_view("clicks"))
    client = master.client()
    results: dict = {0: [], 1: []}
    for i, frame in enumerate(batches(repeats, 1, seed=7)):
        commands = plan_append(settings, store.project, encode_frame(settings, frame))
        for acks in (0, 1) if i % 2 else (1, 0):
            start = time.perf_counter()
            execute(client, commands, "measuring", acks=ReplicaAcks(1, 1000) if acks else NO_ACKS)
            results[acks].append((time.perf_counter() - start) * 1000)
    p50 = {acks: statistics.median(times) for acks, times in results.items()}
    print(
        f"one append pipeline (1 event, 1 view), {repeats} each: p50 {p50[0]:.3f} ms without WAIT, "
        f"{p50[1]:.3f} ms with WAIT 1 ({p50[1] - p50[0]:+.3f} ms)"
    )


def measure_wait_cost(repeats: int = 400) -> None:
    """p50 push latency with and without ``min_replica_acks: 1`` on a local master and replica,
    interleaved so that both see the same machine load."""
    import sys

    import redis as redis_py

    with LocalRedis() as master, LocalRedis(replica_of=master.port) as replica:
        replica.wait_until_replicating()
        work = Path(tempfile.mkdtemp(prefix="feast-sequence-wait-"))
        try:
            stores = {
                acks: store_on(work, f"{master.connection_string},{TIMEOUTS}", min_replica_acks=acks) for acks in (0, 1)
            }
            print(
                f"{datetime.now():%Y-%m-%d}, Python {sys.version.split()[0]}, redis-py {redis_py.__version__}, "
                f"redis-server {master.client().info('server')['redis_version']}; one push to clicks_push "
                "writes 3 sequence views: 3 pipelines, each ending with WAIT when acks are on"
            )
            for size, count in ((1, repeats), (1000, max(repeats // 4, 10))):
                frames = batches(count, size, seed=size)
                results: dict = {0: [], 1: []}
                for i, frame in enumerate(frames):
                    for acks in (0, 1) if i % 2 else (1, 0):  # alternate who goes first
                        results[acks].append(_push_ms(stores[acks], frame))
                p50 = {acks: statistics.median(times) for acks, times in results.items()}
                p90 = {acks: statistics.quantiles(times, n=10)[-1] for acks, times in results.items()}
                print(
                    f"{size:>5}-event push, {count} each: p50 {p50[0]:.2f} ms without WAIT, "
                    f"{p50[1]:.2f} ms with min_replica_acks: 1 ({p50[1] - p50[0]:+.2f} ms, "
                    f"x{p50[1] / p50[0]:.2f}); p90 {p90[0]:.2f} vs {p90[1]:.2f} ms"
                )
            _measure_one_pipeline(stores[0], master, repeats * 5)
            waits = master.client().info("commandstats").get("cmdstat_wait", {}).get("calls", 0)
            print(f"WAIT calls on the master: {waits} (3 per push with acks on, 1 per lone pipeline)")
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    measure_wait_cost()
