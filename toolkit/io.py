"""Reading and writing stage outputs: every stage saves ``out/data`` with ``save_to_disk``.

Example:
    >>> save(ds, "runs/x/variants/rft"); load("runs/x/variants/rft")             # doctest: +SKIP
"""
from __future__ import annotations

import json
from pathlib import Path

from datasets import Dataset, Features, load_from_disk

from .errors import QupError


class DataError(QupError, FileNotFoundError):
    """A stage input is missing or is not a dataset."""


def save(ds: Dataset, out: str | Path) -> None:
    """``save_to_disk`` into ``out/data`` (``out`` may hold other files, e.g. shards)."""
    ds.save_to_disk(str(Path(out) / "data"))


def load(path: str | Path) -> Dataset:
    """Load a stage output dir (``out/data``), a ``save_to_disk`` dir, or a .parquet/.jsonl file."""
    path = Path(path)
    if (path / "data" / "state.json").is_file():
        path = path / "data"
    if (path / "state.json").is_file():
        if not json.loads((path / "state.json").read_text())["_data_files"]:  # empty: datasets can't reload
            info = json.loads((path / "dataset_info.json").read_text())
            return empty(Features.from_dict(info["features"]))
        return load_from_disk(str(path))
    if path.suffix == ".parquet" and path.is_file():
        return Dataset.from_parquet(str(path))
    if path.suffix in (".jsonl", ".json") and path.is_file():
        return Dataset.from_json(str(path))
    raise DataError(f"no dataset at {path} (expected a stage output dir, parquet or jsonl)")


def empty(features: Features) -> Dataset:
    """A 0-row dataset with ``features`` (``Dataset.from_list([])`` loses them)."""
    return Dataset.from_dict({k: [] for k in features}, features=features)
