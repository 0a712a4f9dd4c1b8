"""What serving derives from definitions (sequence views, use cases), computed once per registry version.

Recovering a view's ``SequenceSettings`` from its tags (three JSON documents, a type per field) and
planning how its stored events decode cost about 0.2 ms a request, a sixth of a one-user read; a
use case's settings and their check against its views, another 0.2 ms.
Feast's request context hands every request the same view objects until its registry cache
refreshes (``utils._get_cached_request_context``), so a view object is first looked up by identity
(entries hold their view, so an id is never reused while its entry lives). A new object (after a
refresh, or whenever Feast's process-wide context cache was cleared by another store's request) is
looked up by its definition: everything ``sequence_settings`` reads (name, tags, schema, entity
columns, TTL), about 10 µs to key against 100 µs to parse, so a ``feast apply`` that changes a
view takes effect with Feast's own refresh and an unchanged view is never parsed again. A use case
is keyed by its name and its definition's text (its tag), so a service object rebuilt per request
(``feast serve`` looks it up by name) still finds its entry; its check against its views is keyed
by the views' cached settings.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Optional, Sequence, Tuple

from feast_sequence.definitions.settings import SequenceSettings, sequence_settings
from feast_sequence.definitions.use_case import TAG_USE_CASE, UseCaseSettings, use_case_settings, validate_use_case
from feast_sequence.storage.read import SequenceRead, plan_read

#: Beyond this many views (registry refreshes over a long life), the cache starts again.
MAX_VIEWS = 1024


class _Entry:
    __slots__ = ("settings", "reads")

    def __init__(self, settings: SequenceSettings):
        self.settings = settings
        self.reads: Dict[Tuple[str, ...], SequenceRead] = {}


def _definition(view: Any) -> Tuple[Any, ...]:
    """Everything ``sequence_settings`` reads of a view, as a dict key."""
    return (
        getattr(view, "name", None),
        tuple(sorted((getattr(view, "tags", None) or {}).items())),
        getattr(view, "ttl", None),
        tuple((f.name, f.dtype) for f in getattr(view, "features", ())),
        tuple((c.name, c.dtype) for c in getattr(view, "entity_columns", ())),
    )


class PlanCache:
    """Per view definition: its settings, and the decode plan of each requested feature list; per use
    case definition: its settings, and the views it was checked against."""

    def __init__(self) -> None:
        #: id(view) -> (the view, kept alive so its id stays its own; its entry).
        self._by_id: Dict[int, Tuple[Any, _Entry]] = {}
        self._by_definition: Dict[Tuple[Any, ...], _Entry] = {}
        self._use_cases: Dict[Tuple[str, str], UseCaseSettings] = {}
        #: (use case, its views' settings by identity) -> those objects, kept alive with their ids.
        self._validated: Dict[Tuple[int, Tuple[Tuple[str, int], ...]], Tuple[Any, ...]] = {}
        self._lock = threading.Lock()

    def _entry(self, view: Any) -> _Entry:
        known = self._by_id.get(id(view))
        if known is not None and known[0] is view:
            return known[1]
        definition = _definition(view)
        entry = self._by_definition.get(definition)
        if entry is None:
            entry = _Entry(sequence_settings(view))  # raises for a corrupt view: nothing cached
        with self._lock:
            if len(self._by_id) >= MAX_VIEWS or len(self._by_definition) >= MAX_VIEWS:
                # replaced whole: a reader racing this sees one dict or the other
                self._by_id, self._by_definition = {}, {}
            self._by_definition[definition] = entry
            self._by_id[id(view)] = (view, entry)
        return entry

    def settings(self, view: Any) -> SequenceSettings:
        """``sequence_settings(view)``, computed once per view definition."""
        return self._entry(view).settings

    def sequence_read(self, view: Any, requested: Optional[Sequence[str]]) -> SequenceRead:
        """``plan_read`` of the view's settings for ``requested``, once per view definition and list."""
        entry = self._entry(view)
        names = tuple(requested or ())
        read = entry.reads.get(names)
        if read is None:
            read = entry.reads[names] = plan_read(entry.settings, requested)
        return read

    def use_case(self, service: Any) -> UseCaseSettings:
        """``use_case_settings(service)``, parsed once per use case definition."""
        key = (service.name, (service.tags or {}).get(TAG_USE_CASE, ""))
        settings = self._use_cases.get(key)
        if settings is None:
            settings = use_case_settings(service)  # raises for a corrupt definition: nothing cached
            with self._lock:
                if len(self._use_cases) >= MAX_VIEWS:
                    self._use_cases = {}
                self._use_cases[key] = settings
        return settings

    def validate(self, use_case: UseCaseSettings, views: Dict[str, SequenceSettings]) -> None:
        """``validate_use_case``, once per use case and views' settings (this cache's objects)."""
        key = (id(use_case), tuple((name, id(settings)) for name, settings in views.items()))
        if key in self._validated:
            return
        validate_use_case(use_case, views)  # raises: nothing cached
        with self._lock:
            if len(self._validated) >= MAX_VIEWS:
                self._validated = {}
            self._validated[key] = (use_case, *views.values())

    def __len__(self) -> int:
        return len(self._by_definition)
