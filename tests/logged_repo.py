"""serving_repo's objects plus use cases that log what they serve to a file destination."""

from __future__ import annotations

from pathlib import Path
from typing import List

from feast.feature_logging import LoggingConfig
from feast.infra.offline_stores.file_source import FileLoggingDestination

from feast_sequence import SequenceSpec, SequenceUseCase

import serving_repo


def log_dir(data_dir: Path, use_case: str) -> Path:
    return data_dir / "logs" / use_case


def logged_use_case(clicks, items, data_dir: Path, name: str, sample_rate: float = 1.0, length: int = 3):
    """``ranking_serving``'s shaping (filtered, windowed, enriched at serving time, padded), logged."""
    from feast_sequence import enrich

    spec = dict(serving_repo.RANKING, length=length)
    return SequenceUseCase(
        name=name,
        features=[clicks[["item_id", "kind", "n", "ts"]]],
        sequences={"clicks": SequenceSpec(**spec, enrich=[enrich(items, on="item_id", features=["title", "cost"])])},
        output="padded",
        logging_config=LoggingConfig(
            destination=FileLoggingDestination(path=str(log_dir(data_dir, name))), sample_rate=sample_rate
        ),
    )


def objects(data_dir: Path) -> List:
    objects = serving_repo.objects(data_dir)
    by_name = {o.name: o for o in objects}
    clicks, items = by_name["clicks"], by_name["items"]
    return objects + [
        logged_use_case(clicks, items, data_dir, "ranking_logged"),
        logged_use_case(clicks, items, data_dir, "ranking_unsampled", sample_rate=0.0),
        logged_use_case(clicks, items, data_dir, "ranking_half", sample_rate=0.5),
    ]
