"""`run_benchmarks.py load`: the HTTP servers under load, on loopback (issue 25).

`feast-sequence serve` against `feast serve` on Feast's built-in Redis store holding the same
events as arrays (1,000 customers x 100 events, two views), with 1 and then 2 workers each, both
servers up at once on one private Redis. The closed-loop client (`http_load.py`) keeps
``LOAD_CONCURRENCY`` requests in flight and records each one's latency; every request must answer
200. Each case runs ``LOAD_SECONDS`` on each server; a case measured on both servers alternates
slices of ``LOAD_SLICE_SECONDS`` between them, so drift on a shared machine hits both alike.

Cases (keys ``load_<case>_rps|p50_ms|p99_ms``; ``load_2w_<case>_...`` with 2 workers):
- ``read`` / ``read_builtin``: a plain read of one random customer, two views x 4 fields;
- ``use_case`` (ours only): ``bench_ranking`` (run_benchmarks.add_use_case: filter, enrichment from
  a regular view with a warm cache, padding to 100), one customer;
- ``push`` / ``push_builtin``: one-event pushes, ours into a sequence view, the built-in store's into
  a regular view (it cannot append to an array: that is a read-modify-write, `rmw_*` in `online`);
- ``read_pushing`` (+ ``push_reading``): plain reads while ``LOAD_PUSHERS`` connections push;
- ``push_worker_cpu_ms``: our workers' CPU time per push in the ``push`` case, which the machine's
  other load does not move as it moves the rates.

    .venv/bin/python tests/benchmarks/run_benchmarks.py load
    LOAD_SECONDS=2 .venv/bin/python tests/benchmarks/load_benchmarks.py   # a quick smoke run, alone

Workers are never recycled (``--max-requests 0`` on both: Feast's default restarts a worker every
~1,000 requests, which would put worker start-ups in the figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

import run_benchmarks as rb
from http_load import Request, Stream, Tally, exchange, post, run_load, workers_cpu_seconds

from feast_sequence.testing.local_redis import LocalRedis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the servers
from feast_server import feast_sequence_serve, feast_serve  # noqa: E402

SECONDS = float(os.environ.get("LOAD_SECONDS", "24"))  # per case and server
SLICE_SECONDS = float(os.environ.get("LOAD_SLICE_SECONDS", "4"))
WARMUP_SECONDS = float(os.environ.get("LOAD_WARMUP_SECONDS", "2"))
CONCURRENCY = int(os.environ.get("LOAD_CONCURRENCY", "8"))
PUSHERS = int(os.environ.get("LOAD_PUSHERS", "2"))
MAX_REQUESTS = int(os.environ.get("LOAD_MAX_REQUESTS", "200000"))  # per slice: a bound besides time
WORKERS = (1, 2)
CUSTOMERS = 1000
SEQ_REFS = [f"seq_{v}:{f}" for v in ("a", "b") for f in ("item_id", "quantity", "price", "ts")]
BASE_REFS = [f"arrays:{v}_{f}" for v in ("a", "b") for f in ("item_id", "quantity", "price", "ts")]


def one_customer(key: str, features: object) -> Request:
    """A read of ``features`` (refs, or a feature service's name under ``key``) for one random
    customer a request; the bodies are built once."""
    bodies = [
        post("/get-online-features", {key: features, "entities": {"customer_id": [c]}, "full_feature_names": True})
        for c in range(CUSTOMERS)
    ]
    rng = random.Random(rb.RNG_SEED)
    return lambda: bodies[rng.randrange(CUSTOMERS)]


def one_event(source: str) -> Request:
    """A push of one new event a request: a random customer and item, each time one second later."""
    rng = random.Random(rb.RNG_SEED)
    counter = iter(range(10**9))

    def next_push() -> bytes:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(2_000_000_000 + next(counter)))
        df = {
            "customer_id": [rng.randrange(CUSTOMERS)],
            "item_id": [f"item_{rng.randrange(5000):05d}"],
            "quantity": [rng.randrange(1, 50)],
            "price": [round(rng.uniform(0.5, 30), 2)],
            "ts": [ts],
        }
        return post("/push", {"push_source_name": source, "df": df, "to": "online"})

    return next_push


def warm(cases: Dict[str, List[Stream]]) -> None:
    """Run each case for WARMUP_SECONDS, unmeasured."""
    for streams in cases.values():
        run_load(streams, WARMUP_SECONDS, MAX_REQUESTS)


def measure(cases: Dict[str, List[Stream]]) -> Dict[str, List[Tally]]:
    """Run the cases (name -> streams run together), warmed up, in turn, slice by slice, until each
    has run SECONDS; per case, a Tally per stream."""
    tallies = {name: [Tally() for _ in streams] for name, streams in cases.items()}
    slices = max(1, round(SECONDS / SLICE_SECONDS)) if len(cases) > 1 else 1
    for _ in range(slices):
        for name, streams in cases.items():
            for total, part in zip(tallies[name], run_load(streams, SECONDS / slices, MAX_REQUESTS)):
                total.latencies += part.latencies
                total.seconds += part.seconds
    return tallies


@dataclass(frozen=True)
class Repositories:
    seq: Path
    base: Path
    use_case: str


def repositories(root: Path, connection: str) -> Repositories:
    """Ours and the built-in store's (run_benchmarks' builders), holding the same events."""
    seq = rb.sequence_store(root, connection)
    base = rb.builtin_store(root, connection)
    full = rb.full_sequences(CUSTOMERS, 100, seed=11)
    seq.push("seq_a_push", full)
    seq.push("seq_b_push", full)
    base.push("arrays_push", rb.as_arrays(full))
    service, _, _, _ = rb.add_use_case(seq, full)
    return Repositories(Path(str(seq.repo_path)), Path(str(base.repo_path)), service.name)


@contextlib.contextmanager
def servers(repos: Repositories, workers: int) -> Iterator[Tuple[int, int]]:
    """Both servers with ``workers`` workers each; yields their ports (ours, built-in)."""
    options = ("--workers", str(workers), "--max-requests", "0", "--registry_ttl_sec", "3600")
    with feast_sequence_serve(repos.seq, *options) as ours, feast_serve(repos.base, *options) as builtin:
        yield ours, builtin


def warm_use_case(port: int, service: str, workers: int) -> None:
    """Fill every worker's enrichment cache, as a running service's would be: every customer, in
    requests of 100, from ``2 x workers`` connections at once (each worker accepts some)."""
    batches = [
        post(
            "/get-online-features",
            {
                "feature_service": service,
                "entities": {"customer_id": list(range(s, s + 100))},
                "full_feature_names": True,
            },
        )
        for s in range(0, CUSTOMERS, 100)
    ]

    async def send_all() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for request in batches:
            await exchange(reader, writer, request)
        writer.close()

    async def from_each() -> None:
        await asyncio.gather(*(send_all() for _ in range(2 * workers)))

    asyncio.run(from_each())


def with_workers(repos: Repositories, workers: int) -> Dict[str, float]:
    """Every case with ``workers`` workers per server."""
    with servers(repos, workers) as (ours, builtin):
        warm_use_case(ours, repos.use_case, workers)
        read, read_builtin = one_customer("features", SEQ_REFS), one_customer("features", BASE_REFS)
        push, push_builtin = one_event("seq_a_push"), one_event("regular_push")
        reads = {
            "read": [Stream(ours, read, CONCURRENCY)],
            "read_builtin": [Stream(builtin, read_builtin, CONCURRENCY)],
        }
        use_case = {"use_case": [Stream(ours, one_customer("feature_service", repos.use_case), CONCURRENCY)]}
        pushes = {
            "push": [Stream(ours, push, CONCURRENCY)],
            "push_builtin": [Stream(builtin, push_builtin, CONCURRENCY)],
        }
        mixed_cases = {
            "read_pushing": [Stream(ours, read, CONCURRENCY), Stream(ours, push, PUSHERS)],
            "read_pushing_builtin": [
                Stream(builtin, read_builtin, CONCURRENCY),
                Stream(builtin, push_builtin, PUSHERS),
            ],
        }
        warm(reads)
        tallies = measure(reads)
        warm(use_case)
        tallies.update(measure(use_case))
        warm(pushes)
        # Our workers' CPU per push: the figure the machine's other load does not move (they idle
        # while the built-in server's slices run).
        cpu_before = workers_cpu_seconds(ours)
        tallies.update(measure(pushes))
        push_cpu_ms = (workers_cpu_seconds(ours) - cpu_before) * 1000 / len(tallies["push"][0].latencies)
        warm(mixed_cases)
        mixed = measure(mixed_cases)
    for name, (read_tally, push_tally) in mixed.items():
        tallies[name] = [read_tally]
        tallies[name.replace("read_pushing", "push_reading")] = [push_tally]
    prefix = "load_" if workers == 1 else f"load_{workers}w_"
    results: Dict[str, float] = {}
    for name, (tally,) in tallies.items():
        results.update(tally.figures(prefix + name))
    # Ours over the built-in store's arrays: plain reads at the same concurrency, measured together.
    results[f"{prefix}read_rps_ratio"] = results[f"{prefix}read_rps"] / results[f"{prefix}read_builtin_rps"]
    results[f"{prefix}push_worker_cpu_ms"] = push_cpu_ms
    return results


def run(connection: str, workers: Sequence[int] = WORKERS) -> Dict[str, float]:
    results: Dict[str, float] = {"load_concurrency": CONCURRENCY, "load_seconds_per_case": SECONDS}
    with tempfile.TemporaryDirectory() as tmp:
        repos = repositories(Path(tmp), connection)
        for count in workers:
            results.update(with_workers(repos, count))
    return results


if __name__ == "__main__":
    with LocalRedis() as redis:
        for key, value in run(redis.connection_string).items():
            print(f"{key:40} {value:12.3f}")
