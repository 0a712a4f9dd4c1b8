"""Prometheus metrics made on first use, for the modules that define them (serving/metrics.py,
serving/log_metrics.py), which expose them as module attributes (PEP 562).

Made on first use rather than at import: importing ``feast.metrics`` creates a temporary directory
and sets Prometheus's environment variables, which a process that only imports feast_sequence must
not pay for. ``feast.metrics`` goes first so that ``prometheus_client`` picks its multiprocess mode.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Collection, Dict


class LazyMetrics:
    """The metrics ``define(prometheus_client)`` makes, by name, made once on first access."""

    def __init__(self, module_name: str, names: Collection[str], define: Callable[[Any], Dict[str, Any]]) -> None:
        self._module_name = module_name
        self._names = frozenset(names)
        self._define = define
        self.all: Callable[[], Dict[str, Any]] = lru_cache(maxsize=None)(self._make)

    def _make(self) -> Dict[str, Any]:
        import prometheus_client
        from feast import metrics as _feast_metrics  # noqa: F401  (sets the multiprocess directory)

        return self._define(prometheus_client)

    def attribute(self, name: str) -> Any:
        """The module's ``__getattr__``: a metric by name; any other name raises without making them."""
        if name in self._names:
            return self.all()[name]
        raise AttributeError(f"module {self._module_name!r} has no attribute {name!r}")
