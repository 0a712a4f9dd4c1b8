"""The online store's public path, as written in ``feature_store.yaml``::

    online_store:
      type: feast_sequence.online_store.SequenceRedisOnlineStore

Feast imports the store class, and its ``...Config`` class, from this module; they live in
``feast_sequence.online.store``.
"""

from feast_sequence.online.store import SequenceRedisOnlineStore, SequenceRedisOnlineStoreConfig

__all__ = ["SequenceRedisOnlineStore", "SequenceRedisOnlineStoreConfig"]
