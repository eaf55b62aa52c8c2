"""Reading and writing stage outputs: every stage saves ``out/data`` with ``save_to_disk``."""
from __future__ import annotations

from pathlib import Path

from datasets import Dataset, load_from_disk


def save(ds: Dataset, out: str | Path) -> None:
    """``save_to_disk`` into ``out/data`` (``out`` may hold other files, e.g. shards)."""
    ds.save_to_disk(str(Path(out) / "data"))


def load(path: str | Path) -> Dataset:
    """Load a stage output dir (``out/data``), a ``save_to_disk`` dir, or a .parquet/.jsonl file."""
    path = Path(path)
    if (path / "data" / "state.json").is_file():
        return load_from_disk(str(path / "data"))
    if (path / "state.json").is_file():
        return load_from_disk(str(path))
    if path.suffix == ".parquet" and path.is_file():
        return Dataset.from_parquet(str(path))
    if path.suffix in (".jsonl", ".json") and path.is_file():
        return Dataset.from_json(str(path))
    raise FileNotFoundError(f"no dataset at {path} (expected a stage output dir, parquet or jsonl)")
