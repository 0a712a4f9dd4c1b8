"""Files landing in a folder the streaming job watches, as a producer must write them (whole)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


def land(frame: pd.DataFrame, folder: Path, name: str, file_format: str) -> None:
    """Write the file next to the folder, then move it in whole, as producers must."""
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}-staging"
    staging.mkdir(exist_ok=True)
    path = staging / f"{name}.{file_format}"
    if file_format == "json":
        frame.assign(ts=frame["ts"].map(lambda t: t.isoformat())).to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False, coerce_timestamps="us")
    os.replace(path, folder / path.name)
