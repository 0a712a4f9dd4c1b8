"""What each column of a format 5 block costs (docs/storage-layout.md): bytes per event of every
stored part of one user's block, for the benchmark's current data and its high-entropy data, at
100 / 1,000 / 10,000 events, beside the same events as rows (format 4). Pure, no Redis:
`.venv/bin/python tests/benchmarks/block_column_sizes.py`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import run_benchmarks as rb  # noqa: E402
from long_benchmarks import current_sequences, high_entropy_sequences  # noqa: E402

from feast_sequence import SequenceFeatureView, sequence_settings  # noqa: E402
from feast_sequence.storage import block_columns as bc  # noqa: E402
from feast_sequence.storage import blocks  # noqa: E402
from feast_sequence.storage.append import encode_frame  # noqa: E402

from repos import PURCHASE_FIELDS, push_source  # noqa: E402

PARTS = ("layout", "scores", "shapes")


def sections(block: bytes) -> List[Tuple[int, int]]:
    """(raw size, stored size) of each part of a columnar block's body."""
    body = block[block.index(b";") + 2 : -4]
    out, pos = [], 0
    while pos < len(body):
        raw, pos = bc.varint_at(body, pos)
        stored, pos = bc.varint_at(body, pos)
        out.append((raw, stored))
        pos += stored
    return out


def sizes(n: int, make) -> Dict[str, float]:
    view = SequenceFeatureView(
        name="v", entities=[rb.customer], source=push_source("v", Path("/tmp")), schema=PURCHASE_FIELDS, max_length=n
    )
    settings = sequence_settings(view)
    encoded = encode_frame(settings, make(1, n, n))
    ordered = sorted(zip(encoded.scores_us, encoded.members), reverse=True)
    events = blocks.Events([s for s, _ in ordered], [m for _, m in ordered], [0] * len(ordered))
    block = blocks.encode(events)
    decoded = blocks.decode(block)
    names = list(PARTS)
    by_number = {f.stored_number: f.name for f in settings.fields}
    by_number.update({1: "timestamp seconds", 2: "timestamp micros"})
    names += [by_number.get(tag >> 3, str(tag)) for tag in decoded.columns().columns]
    out = {name: stored / n for name, (_, stored) in zip(names, sections(block))}
    out["header + check"] = (block.index(b";") + 2 + 4) / n
    out["block (format 5)"] = len(block) / n
    out["rows (format 4)"] = len(blocks.encode_rows(events)) / n
    out["members, uncompressed"] = sum(map(len, events.members)) / n
    return out


def main() -> None:
    for name, make in (("current", current_sequences), ("high-entropy", high_entropy_sequences)):
        table = {n: sizes(n, make) for n in (100, 1000, 10_000)}
        print(f"\n{name} data, bytes per event")
        print(f"{'part':24s}" + "".join(f"{n:>10,}" for n in table))
        for part in table[1000]:
            print(f"{part:24s}" + "".join(f"{table[n].get(part, 0.0):10.2f}" for n in table))


if __name__ == "__main__":
    main()
