"""The reserved tags that carry a sequence view's settings through Feast's registry."""

from __future__ import annotations

from typing import Any

TAG_PREFIX = "feast_sequence."
TAG_FORMAT = TAG_PREFIX + "format"
TAG_MAX_LENGTH = TAG_PREFIX + "max_length"
TAG_DEDUP_BY = TAG_PREFIX + "dedup_by"
TAG_TIMESTAMP_FIELD = TAG_PREFIX + "timestamp_field"
TAG_ENRICH = TAG_PREFIX + "enrich"
TAG_FIELD_NUMBERS = TAG_PREFIX + "field_numbers"


def is_sequence_view(view: Any) -> bool:
    """True when ``view`` (any Feast view object, fresh or rebuilt from the registry) is a sequence."""
    tags = getattr(view, "tags", None) or {}
    return TAG_MAX_LENGTH in tags
