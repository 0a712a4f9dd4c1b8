"""What serving derives from definitions (sequence views, use cases), computed once per registry version.

Recovering a view's ``SequenceSettings`` from its tags (three JSON documents, a type per field) and
planning how its stored events decode cost about 0.2 ms a request, a sixth of a one-user read; a
use case's settings and their check against its views, another 0.2 ms.
Feast's request context hands every request the same view objects until its registry cache
refreshes (``utils._get_cached_request_context``), and a refresh builds new objects, so keying by
the view object itself caches per registry version: a ``feast apply`` takes effect with Feast's
own refresh. Entries hold their view, so an id is never reused while its entry lives. A use case
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
    __slots__ = ("view", "settings", "reads")

    def __init__(self, view: Any, settings: SequenceSettings):
        self.view = view  # kept alive, so its id stays its own
        self.settings = settings
        self.reads: Dict[Tuple[str, ...], SequenceRead] = {}


class PlanCache:
    """Per view object: its settings, and the decode plan of each requested feature list; per use
    case definition: its settings, and the views it was checked against."""

    def __init__(self) -> None:
        self._entries: Dict[int, _Entry] = {}
        self._use_cases: Dict[Tuple[str, str], UseCaseSettings] = {}
        #: (use case, its views' settings by identity) -> those objects, kept alive with their ids.
        self._validated: Dict[Tuple[int, Tuple[Tuple[str, int], ...]], Tuple[Any, ...]] = {}
        self._lock = threading.Lock()

    def _entry(self, view: Any) -> _Entry:
        entry: Optional[_Entry] = self._entries.get(id(view))
        if entry is not None and entry.view is view:
            return entry
        entry = _Entry(view, sequence_settings(view))  # raises for a corrupt view: nothing cached
        with self._lock:
            if len(self._entries) >= MAX_VIEWS:
                self._entries = {}  # replaced whole: a reader racing this sees one dict or the other
            self._entries[id(view)] = entry
        return entry

    def settings(self, view: Any) -> SequenceSettings:
        """``sequence_settings(view)``, computed once per view object."""
        return self._entry(view).settings

    def sequence_read(self, view: Any, requested: Optional[Sequence[str]]) -> SequenceRead:
        """``plan_read`` of the view's settings for ``requested``, computed once per view and list."""
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
        return len(self._entries)
