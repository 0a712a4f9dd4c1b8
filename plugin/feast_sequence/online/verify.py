"""``feast-sequence verify``'s scan: every stored sequence of a view read atomically and checked for
corrupt or incoherent state (storage/integrity.sequence_problems), and the deletion that starts a
repair. The repair's rebuild from the offline source is a Spark job (transformations/verify.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Set

from feast.repo_config import RepoConfig

from feast_sequence.definitions.settings import SequenceSettings
from feast_sequence.online.maintenance import scan_batches
from feast_sequence.storage import integrity
from feast_sequence.storage.keys import read_keys, sequence_keys_of, view_scan_pattern, writing_keys, zset_key_of
from feast_sequence.storage.levels import Stored, pairs
from feast_sequence.storage.redis_io import Access, evalsha, execute, replica_acks, retry_policy
from feast_sequence.storage.scripts import VERIFY


@dataclass(frozen=True)
class Finding:
    """One problem of one stored sequence."""

    view: str
    entity: Dict[str, Any]  # join key -> value
    key: bytes  # the sequence's tail key (its hash and block keys differ in the last letter)
    problem: str

    def __str__(self) -> str:
        entity = ", ".join(f"{k}={v!r}" for k, v in self.entity.items())
        return f"{self.view} {entity} ({self.key!r}): {self.problem}"


def verify_view(client: Any, config: RepoConfig, settings: SequenceSettings, batch: int = 200) -> List[Finding]:
    """Every problem of every stored sequence of one view, in key order within each scanned batch.
    Read-only; each sequence is read by one script, so a concurrent write is never seen half done."""
    findings: List[Finding] = []
    seen: Set[bytes] = set()
    what = f"verifying the stored sequences of '{settings.view_name}'"
    for keys in scan_batches(client, view_scan_pattern(config.project, settings.view_name), batch):
        sequences = sorted({zset_key_of(k) for k in keys} - seen)
        seen.update(sequences)
        commands = [evalsha(VERIFY, read_keys(sequence_keys_of(z)), ()) for z in sequences]
        replies = execute(client, commands, what, retry_policy(config.online_store)) if commands else []
        for zset, (block, tail, identity_hash, level_pairs) in zip(sequences, replies):
            stored = Stored(block or None, pairs(level_pairs))
            for problem in integrity.sequence_problems(settings, stored, tail, identity_hash):
                entity = integrity.entity_values(settings, zset)
                findings.append(Finding(settings.view_name, entity, zset, problem))
    return findings


def delete_sequences(client: Any, config: RepoConfig, zset_keys: Sequence[bytes]) -> int:
    """Delete the given sequences (tail, identity hash, block and version token each: a compaction
    that read the damaged state must not commit over it); returns the keys deleted."""
    commands = [("UNLINK", *writing_keys(sequence_keys_of(z))) for z in sorted(set(zset_keys))]
    if not commands:
        return 0
    online = config.online_store
    replies = execute(
        client, commands, "deleting corrupt sequences", retry_policy(online), replica_acks(online), Access.WRITE
    )
    return sum(replies)
