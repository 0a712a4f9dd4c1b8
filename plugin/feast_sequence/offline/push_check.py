"""Whether a pushed frame can be written to a view's offline source, checked before anything is written.

Feast's ``write_to_offline_store`` checks a push's columns against the batch source only when it
writes, and a ``PushMode.ONLINE_AND_OFFLINE`` push has written online by then: the events are
served but missing from training data. ``offline_push_problem`` runs Feast's column check and the
type conversion the offline store makes (the frame cast to the source's arrow schema) up front.
"""

from __future__ import annotations

from typing import List, Optional

import pandas as pd
import pyarrow as pa


def offline_push_problem(source_schema: pa.Schema, df: pd.DataFrame) -> Optional[str]:
    """What would make the offline store refuse ``df`` for a source of ``source_schema`` (None if
    nothing): columns missing or extra, as Feast's check compares them, or a column whose values do
    not convert to the source's type (named, with the first value that does not)."""
    expected, given = list(source_schema.names), [str(c) for c in df.columns]
    missing = sorted(set(expected) - set(given))
    extra = sorted(set(given) - set(expected))
    if missing or extra:
        return f"columns do not match its offline source's: missing {missing}, extra {extra}"
    problems: List[str] = []
    for field in source_schema:
        column = df[field.name]
        try:
            if pa.types.is_timestamp(field.type):
                # Units and zones are the provider's to convert (SequenceProvider.ingest_df_to_offline_store),
                # and a source's files may hold zone-aware times that ISO text with an offset casts to.
                pd.to_datetime(column, utc=True)
                continue
            pa.array(column, from_pandas=True).cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError, ValueError) as error:
            first = str(error).splitlines()[0]
            problems.append(f"column '{field.name}' ({column.dtype}) does not convert to {field.type}: {first}")
    return "; ".join(problems) or None
