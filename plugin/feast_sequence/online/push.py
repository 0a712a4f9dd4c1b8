"""``feast_sequence.push``: ``store.push`` at a cost that does not grow with the registry.

``FeatureStore.push`` finds a push source's views by rebuilding every view of the registry from
its protobuf, then rebuilds them all again for each view it writes (``write_to_online_store``), and
reloads the feature services from the registry store for the precompute step: about 0.6 ms per view
in the registry, per call. Feast has no seam to skip that, so this function does the same work
from ``PushSourceViews``, an index rebuilt only when the store's registry cache changes, and hands
each view to the same provider methods ``store.push`` reaches. Per call it costs one registry cache
check plus the writes themselves.

Same semantics as ``store.push``: the views are Feast's selection, a frame with no rows or no
feature values skips a view with Feast's warning, vector lengths are checked, field mappings are
applied by the provider and the offline store exactly as for ``store.push``, and the errors are
Feast's (``PushSourceNotFoundException``, ``ValueError``) or ours (``SequenceInputError``). Unlike
``store.push``, the frame is validated for every view and every destination before any is written
(the multi-view rule without one check per pair of views; for ``ONLINE_AND_OFFLINE``, the offline
sources' columns and types too, so a frame the offline store would refuse writes nothing online),
and the online writes all come before the offline ones (as in ``push_async``). An offline write
that fails anyway (storage) raises ``PartialPushError`` saying what was written.

In a server, the caller's permissions are checked (Feast's ``WRITE_ONLINE``/``WRITE_OFFLINE`` on every
view the source feeds, online/permissions.py) before anything is written. From a client whose
``online_store`` is ``type: remote``, the push is sent whole to the server's ``/push``
(online/remote_push.py), which does all of the above there.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Tuple

import pandas as pd
from feast import FeatureStore
from feast.data_source import PushMode

from feast_sequence.errors import PartialPushError, SequenceInputError
from feast_sequence.feast_internals import validate_vector_features
from feast_sequence.offline.push_check import offline_push_problem
from feast_sequence.online.permissions import assert_can_push
from feast_sequence.online.provider import SequenceProvider, sequence_provider
from feast_sequence.online.remote_push import is_remote, push_remote

_logger = logging.getLogger(__name__)
_ONLINE = (PushMode.ONLINE, PushMode.ONLINE_AND_OFFLINE)
_OFFLINE = (PushMode.OFFLINE, PushMode.ONLINE_AND_OFFLINE)


@dataclass(frozen=True)
class _Plan:
    """One validated push: what to write where. Shared by the sync and async drivers."""

    provider: SequenceProvider
    online: Tuple[Any, ...]
    offline: Tuple[Any, ...]
    precompute: Tuple[str, ...]


def push(
    store: FeatureStore,
    push_source_name: str,
    df: pd.DataFrame,
    to: PushMode = PushMode.ONLINE,
    allow_registry_cache: bool = True,
) -> None:
    """Push ``df`` to every view fed by ``push_source_name``, as ``store.push`` does, in a time that
    does not depend on how many views the registry holds. Validates the frame for every view
    before writing any. Raises Feast's ``PushSourceNotFoundException`` for an unknown source.
    """
    if is_remote(store.config):
        push_remote(store.config, push_source_name, df, to, allow_registry_cache)
        return
    plan = _plan(store, push_source_name, df, to, allow_registry_cache)
    for view in plan.online:
        plan.provider.write_pushed(view, df)
    _finish(store, plan, df, allow_registry_cache)


async def push_async(
    store: FeatureStore,
    push_source_name: str,
    df: pd.DataFrame,
    to: PushMode = PushMode.ONLINE,
    allow_registry_cache: bool = True,
) -> None:
    """``push`` on the event loop: the online writes on the async Redis client, the offline writes in
    a thread (Feast's offline stores are synchronous), as ``store.push_async``. The views are written
    one after another, not gathered: the first write is what validates the frame for the first view."""
    if is_remote(store.config):
        await asyncio.to_thread(push_remote, store.config, push_source_name, df, to, allow_registry_cache)
        return
    plan = _plan(store, push_source_name, df, to, allow_registry_cache)
    for view in plan.online:
        await plan.provider.write_pushed_async(view, df)
    if plan.offline or plan.precompute:
        await asyncio.to_thread(_finish, store, plan, df, allow_registry_cache)


async def push_json_async(
    store: FeatureStore, push_source_name: str, columns: Mapping[str, Sequence[Any]], allow_registry_cache: bool = True
) -> bool:
    """``push_async(store, push_source_name, pd.DataFrame(columns), PushMode.ONLINE)`` for a small
    request of JSON columns (``/push``), without pandas: every view's events are encoded
    (storage/json_events.py) before any is written. Returns False, having written nothing, when the
    request needs ``push_async``: a value to check or convert there, a regular view, a field mapping,
    a precomputed feature service, a remote store."""
    if is_remote(store.config):
        return False
    provider = sequence_provider(store)
    targets = provider.push_views(store.registry).resolve(push_source_name, allow_registry_cache)
    if any(targets.precomputed_services.get(view.name) for view in targets.views):
        return False
    assert_can_push(targets.views, PushMode.ONLINE)
    encoded = []
    for view in targets.views:
        try:
            events = provider.encode_json_columns(view, columns)
        except SequenceInputError:  # an oversized event: raised by push_async, for the view it checks first
            return False
        if events is None:
            return False
        encoded.append((view, events))
    for view, events in encoded:
        await provider.write_encoded_async(view, events)
    return bool(encoded)


def _plan(store: FeatureStore, push_source_name: str, df: pd.DataFrame, to: PushMode, allow_cache: bool) -> _Plan:
    provider = sequence_provider(store)
    targets = provider.push_views(store.registry).resolve(push_source_name, allow_cache)
    assert_can_push(targets.views, to)
    online: Tuple[Any, ...] = ()
    if to in _ONLINE:
        online = tuple(view for view in targets.views if _has_feature_values(store, push_source_name, view, df))
        # The first view's write validates the whole frame before it sends anything, so only the
        # others need checking here.
        provider.validate_push(online[1:], df)
    offline = targets.views if to in _OFFLINE else ()
    for view in offline:
        problem = offline_push_problem(provider.offline_push_schema(view), df)
        if problem:
            raise SequenceInputError(
                f"Push to '{push_source_name}' (to={to.name}) for view '{view.name}': the frame's {problem}. "
                "Nothing was written, online or offline."
            )
    precompute = tuple(
        dict.fromkeys(name for view in online for name in targets.precomputed_services.get(view.name, ()))
    )
    return _Plan(provider, online, offline, precompute)


def _has_feature_values(store: FeatureStore, push_source_name: str, view: Any, df: pd.DataFrame) -> bool:
    """``FeatureStore.write_to_online_store``'s checks, with its warnings: vector lengths (raises),
    then no rows or only null feature values (skips the view). A missing feature column is refused
    with the columns named (Feast's check raises pandas' bare ``KeyError``)."""
    names = [f.name for f in view.features]
    missing = [name for name in names if name not in df.columns]
    if missing:
        raise SequenceInputError(
            f"Push source '{push_source_name}', view '{view.name}': pushed data lacks column(s) {missing}; "
            f"the view's features are {names}. The batch was rejected; nothing was written."
        )
    validate_vector_features(store, view, df)
    if df.empty:
        warnings.warn("Cannot write empty dataframe to online store", stacklevel=3)
        return False
    # Feast's `df[names].isnull().all().all()`, column by column on numpy: that one pandas
    # expression cost half of a one-event push.
    if names and all(pd.isna(df[name].to_numpy()).all() for name in names):
        warnings.warn("Cannot write dataframe with empty feature columns to online store", stacklevel=3)
        return False
    return True


def _finish(store: FeatureStore, plan: _Plan, df: pd.DataFrame, allow_cache: bool) -> None:
    """The offline writes (Feast's own ``write_to_offline_store``: one view from the registry, the
    batch source's columns checked, field mapping applied) and the precompute step of ``store.push``."""
    for position, view in enumerate(plan.offline):
        try:
            store.write_to_offline_store(view.name, df, allow_registry_cache=allow_cache)
        except Exception as error:
            if not plan.online and not position:
                raise  # nothing was written
            online = [v.name for v in plan.online]
            offline = [v.name for v in plan.offline[:position]]
            raise PartialPushError(
                f"The push was written online to views {online} and offline to {offline}, but writing "
                f"view '{view.name}' offline failed ({type(error).__name__}: {error}); views "
                f"{[v.name for v in plan.offline[position:]]} were not written offline. Online writes are "
                "idempotent; push the frame again with to=OFFLINE for the views not written offline."
            ) from error
    for service in plan.precompute:
        try:
            store.precompute_feature_service(service)
        except Exception:
            # As store.push: a failed precompute does not fail the push that has been written.
            _logger.warning("Failed to precompute vectors for service '%s' after push", service, exc_info=True)
