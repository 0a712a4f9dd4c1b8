"""``SequenceProvider``: Feast's passthrough provider, with pushes to sequence views sent as events.

Feast converts every pushed row to protobuf values one by one before the online store sees it, and
would convert a sequence view's scalar event columns as lists. This provider hands the pushed
DataFrame of a sequence view straight to the store, which validates and encodes it column-wise.
Everything else is Feast's own behaviour.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import pandas as pd
from feast.infra.passthrough_provider import PassthroughProvider

from feast_sequence._settings import is_sequence_view
from feast_sequence.errors import SequenceConfigurationError
from feast_sequence.online_store import SequenceRedisOnlineStore


class SequenceProvider(PassthroughProvider):
    """Set ``provider: feast_sequence.SequenceProvider`` in feature_store.yaml to use sequence views."""

    def _sequence_store(self) -> SequenceRedisOnlineStore:
        store = self.online_store
        if not isinstance(store, SequenceRedisOnlineStore):
            raise SequenceConfigurationError(
                "Sequence views need 'online_store: type: "
                "feast_sequence.online_store.SequenceRedisOnlineStore' in feature_store.yaml "
                f"(found {type(store).__name__})."
            )
        return store

    def ingest_df(self, feature_view: Any, df: pd.DataFrame, field_mapping: Optional[Dict] = None) -> None:
        if not is_sequence_view(feature_view):
            return super().ingest_df(feature_view, df, field_mapping)
        self._sequence_store().write_events(self.repo_config, feature_view, _mapped(feature_view, df))

    async def ingest_df_async(
        self, feature_view: Any, df: pd.DataFrame, field_mapping: Optional[Dict] = None
    ) -> None:
        if not is_sequence_view(feature_view):
            return await super().ingest_df_async(feature_view, df, field_mapping)
        await self._sequence_store().write_events_async(
            self.repo_config, feature_view, _mapped(feature_view, df)
        )


def _mapped(feature_view: Any, df: pd.DataFrame) -> pd.DataFrame:
    """Apply the batch source's field mapping (source column -> feature name), as Feast does."""
    mapping = getattr(feature_view.batch_source, "field_mapping", None) or {}
    return df.rename(columns=mapping) if mapping else df
