"""Reindex: rebuild a sequence view from its batch source under a definition change that
`feast apply` refuses to make in place (dedup_by, a field's type, the entity key, a reused field).

    feast-sequence reindex --repo feature_repo --view customer_purchases [--days 365] [--end ISO]

It deletes the view's stored events and stored definition, applies the repository (as `feast
apply` does), then backfills the view with the new definition. Readers see the view empty, then
filling, until the backfill ends; to avoid that gap, apply the new definition under a new view name
and switch readers over instead. The default window is the view's TTL, or the whole source.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

from feast import FeatureStore
from feast.repo_config import load_repo_config
from feast.repo_operations import apply_total, parse_repo

from feast_sequence.definitions.settings import is_sequence_view, sequence_settings
from feast_sequence.errors import SequenceConfigurationError, SequenceDefinitionError
from feast_sequence.feast_internals import store_provider
from feast_sequence.offline.indexing import IndexSummary
from feast_sequence.online.store import SequenceRedisOnlineStore
from feast_sequence.transformations._job import open_view, report, spark_submit
from feast_sequence.transformations.backfill import run_backfill

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def run_reindex(
    repo: str, view_name: str, days: Optional[float] = None, end: Optional[datetime] = None, verbose: bool = False
) -> IndexSummary:
    repo_path = Path(repo).resolve()
    # Feast reads a repository as `feast apply` does: from its directory, importable by module path.
    os.chdir(repo_path)
    if str(repo_path) not in sys.path:
        sys.path.insert(0, str(repo_path))
    new_view = next((v for v in parse_repo(repo_path).feature_views if v.name == view_name), None)
    if new_view is None or not is_sequence_view(new_view):
        raise SequenceDefinitionError(f"Repository {repo_path} defines no sequence view '{view_name}' to reindex.")
    settings = sequence_settings(new_view)  # the new definition is valid before anything is deleted
    store = FeatureStore(repo_path=str(repo_path))
    online = store_provider(store).online_store
    if not isinstance(online, SequenceRedisOnlineStore):
        raise SequenceConfigurationError(
            f"The online store is {type(online).__name__}, not feast-sequence's Redis store."
        )
    deleted = online.delete_sequence_view(store.config, view_name)
    report("reindex", view_name, f"deleted {deleted:,} stored keys; applying {repo_path}")
    apply_total(load_repo_config(repo_path, repo_path / "feature_store.yaml"), repo_path, False)
    end = end or datetime.now(timezone.utc)
    if days is None:
        start = end - timedelta(microseconds=settings.ttl_us) if settings.ttl_us else _EPOCH
        days = (end - start) / timedelta(days=1)
    return run_backfill(open_view(str(repo_path), view_name, verbose), days, end)


if __name__ == "__main__":
    sys.exit(spark_submit("reindex"))
