"""What a block checksum costs (docs/storage-layout.md, "The checksum"): the CRC-32 that format 4
appends, against zstd's own content checksum, on a 1,000-event block of benchmark-like events.

Run: ``.venv/bin/python tests/benchmarks/block_checksum.py`` (a few seconds; fixed seed).
"""

from __future__ import annotations

import random
import time
import zlib
from typing import Callable

import zstandard

from feast_sequence.storage import blocks

EVENTS = 1000


def _member(rng: random.Random) -> bytes:
    """An event as stored: a 10-character item id, an int, a float32 and a timestamp."""
    item = b"item%06d" % rng.randrange(10**6)
    return (
        b"\x0a\x0a"
        + item
        + b"\x10"
        + bytes([rng.randrange(1, 127)])
        + b"\x1d"
        + rng.randbytes(4)
        + b"\x08\x80\xa0\xbe\xc5\x06"
    )


def _micros(call: Callable[[], object], times: int = 2000) -> float:
    call()
    start = time.perf_counter()
    for _ in range(times):
        call()
    return (time.perf_counter() - start) / times * 1e6


def main() -> None:
    rng = random.Random(1)
    scores = sorted((1_700_000_000_000_000 + rng.randrange(10**10) for _ in range(EVENTS)), reverse=True)
    block = blocks.encode(blocks.Events(scores, [_member(rng) for _ in range(EVENTS)], [0] * EVENTS))
    decoded = blocks.decode(block)
    assert decoded is not None
    raw = decoded.raw
    plain = zstandard.ZstdCompressor(level=3)
    checked = zstandard.ZstdCompressor(level=3, write_checksum=True)
    reader = zstandard.ZstdDecompressor()
    without, with_check = plain.compress(raw), checked.compress(raw)
    print(f"{EVENTS} events: raw {len(raw)} bytes, block {len(block)} bytes")
    compress, compress_checked = _micros(lambda: plain.compress(raw)), _micros(lambda: checked.compress(raw))
    read, read_checked = _micros(lambda: reader.decompress(without)), _micros(lambda: reader.decompress(with_check))
    print(f"compress:   {compress:6.1f} us, with zstd checksum {compress_checked:6.1f} us")
    print(f"decompress: {read:6.1f} us, with zstd checksum {read_checked:6.1f} us")
    print(f"CRC-32 of the whole block (format 4): {_micros(lambda: zlib.crc32(block)):.1f} us")


if __name__ == "__main__":
    main()
