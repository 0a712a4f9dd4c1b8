"""The load benchmark's client (tests/benchmarks/http_load.py) against a real HTTP/1.1 server on
loopback: it counts and times every answered request, stops at its time or request budget, and
refuses an answer other than 200."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))
from http_load import Stream, post, run_load  # noqa: E402


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Keep-alive: answer each request 200 with its body echoed, or 422 when the body holds 'bad'."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line[15:]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
            body = await reader.readexactly(length)
            status = b"422 Unprocessable Entity" if b"bad" in body else b"200 OK"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
    except asyncio.IncompleteReadError:  # the client closed its connection: the normal end
        writer.close()


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(_answer, "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield server.sockets[0].getsockname()[1]
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    server.close()
    loop.run_until_complete(server.wait_closed())
    loop.close()


def test_it_times_every_request_until_its_time_runs_out(port):
    request = post("/get-online-features", {"entities": {"customer_id": [1]}})
    reads, pushes = run_load([Stream(port, lambda: request, 4), Stream(port, lambda: post("/push", {}), 1)], 0.5, 10**9)
    for tally in (reads, pushes):
        assert 0.5 <= tally.seconds < 5 and len(tally.latencies) > 10
        figures = tally.figures("x")
        assert 0 < figures["x_p50_ms"] <= figures["x_p99_ms"] < 1000
        assert figures["x_rps"] == pytest.approx(len(tally.latencies) / tally.seconds)
    assert len(reads.latencies) > len(pushes.latencies)  # four connections against one


def test_it_stops_at_its_request_budget(port):
    (tally,) = run_load([Stream(port, lambda: post("/push", {}), 3)], 60, 25)
    assert len(tally.latencies) == 25 and tally.seconds < 30


def test_an_answer_other_than_200_fails_the_run(port):
    with pytest.raises(RuntimeError, match=r"/push answered 422: b'\{\"bad\": 1\}'"):
        run_load([Stream(port, lambda: post("/push", {"bad": 1}), 2)], 5, 100)
