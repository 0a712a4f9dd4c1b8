"""Blocks of the formats written before format 5, made from a current block, for the tests of
reading them and of their online conversion (storage/blocks.py)."""

from __future__ import annotations

from feast_sequence.storage import blocks


def old_format(block: bytes, form: int) -> bytes:
    """``block``'s events as a format 4 block (rows, checksum) or a format 3 one (no checksum)."""
    rows = blocks.encode_rows(blocks.decode_events(block))
    return rows if form == 4 else b"\x03" + rows[1:-4]
