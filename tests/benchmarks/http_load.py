"""A bounded, closed-loop HTTP/1.1 load generator on asyncio streams, for `load_benchmarks.py`.

Each stream keeps ``connections`` keep-alive connections to a loopback port, each sending its next
request as soon as the previous one is answered, until a time or a request budget runs out; every
request's latency is recorded, and any answer but 200 raises. No HTTP library: on a 2-CPU machine
the load generator competes with the server for CPU, and these few lines cost far less per request
than httpx or aiohttp (neither is a dependency here) or locust.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Sequence

import psutil

#: The next request's bytes, ready to send.
Request = Callable[[], bytes]


def post(path: str, body: object) -> bytes:
    """``POST path`` with ``body`` as JSON, as bytes to send on a keep-alive connection."""
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


@dataclass(frozen=True)
class Stream:
    """``connections`` connections to ``port``, each sending ``request()`` after ``request()``."""

    port: int
    request: Request
    connections: int


@dataclass
class Tally:
    """One stream's latencies (seconds) and the seconds it ran, over one or more runs."""

    latencies: List[float] = field(default_factory=list)
    seconds: float = 0.0

    def figures(self, key: str) -> Dict[str, float]:
        """``key_rps``, ``key_p50_ms`` and ``key_p99_ms``."""
        n = len(self.latencies)
        if n < 2:
            raise RuntimeError(f"{key}: {n} request(s) answered; too few to measure")
        return {
            f"{key}_rps": n / self.seconds,
            f"{key}_p50_ms": statistics.median(self.latencies) * 1000,
            f"{key}_p99_ms": statistics.quantiles(self.latencies, n=100)[98] * 1000,
        }


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bytes:
    """Send one request on a keep-alive connection and return its answer's body; raise unless 200."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status, length = head[9:12], 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
        elif name.lower() == b"transfer-encoding":
            raise RuntimeError(f"the server answered {value.strip()!r}; this client reads Content-Length only")
    body = await reader.readexactly(length)
    if status != b"200":
        raise RuntimeError(f"{request.split(b' ')[1].decode()} answered {status.decode()}: {body[:300]!r}")
    return body


async def _connection(stream: Stream, stop_at: float, budget: List[int], out: List[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", stream.port)
    try:
        while budget[0] > 0 and time.perf_counter() < stop_at:
            budget[0] -= 1
            start = time.perf_counter()
            await exchange(reader, writer, stream.request())
            out.append(time.perf_counter() - start)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _run(streams: Sequence[Stream], seconds: float, max_requests: int) -> List[Tally]:
    stop_at = time.perf_counter() + seconds
    budget = [max_requests]  # shared by every connection
    tallies = [Tally() for _ in streams]
    start = time.perf_counter()
    await asyncio.gather(
        *(
            _connection(stream, stop_at, budget, tally.latencies)
            for stream, tally in zip(streams, tallies)
            for _ in range(stream.connections)
        )
    )
    for tally in tallies:
        tally.seconds = time.perf_counter() - start
    return tallies


def run_load(streams: Sequence[Stream], seconds: float, max_requests: int) -> List[Tally]:
    """Run ``streams`` together for ``seconds`` or ``max_requests`` requests in all, whichever ends
    first; a Tally per stream. On a fresh event loop (uvloop's when installed: a cheaper client)."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    return runner(_run(streams, seconds, max_requests))


def workers_cpu_seconds(port: int) -> float:
    """CPU time so far of the worker processes of the server started on ``port``."""
    masters = [p for p in psutil.process_iter(["cmdline"]) if "serve" in (p.info["cmdline"] or ())]
    masters = [p for p in masters if str(port) in p.info["cmdline"]]
    return sum(sum(c.cpu_times()[:2]) for m in masters for c in m.children(recursive=True))
