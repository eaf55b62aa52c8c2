"""One resumable unit of work, used under every loop (sample chunks, Oracle shards, score shards,
evaluation chunks): a finished unit is a parquet file whose metadata holds its key, the sha256
of the settings that change its result and of its input rows. It is reused only when the key
matches; a file with another key is removed and redone, and the log says which settings
(or the input) changed. A killed loop resumes from its finished units; a re-run with another
judge, Oracle, model or data never serves another run's rows.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> unit(d / "shard-00000.parquet", {"judge": "a"}, [{"q": 1}], lambda: [{"r": 0.5}])
    [{'r': 0.5}]
    >>> unit(d / "shard-00000.parquet", {"judge": "a"}, [{"q": 1}], lambda: [{"r": 9.0}])  # reused
    [{'r': 0.5}]
    >>> unit(d / "shard-00000.parquet", {"judge": "b"}, [{"q": 1}], lambda: [{"r": 0.7}])  # redone
    [{'r': 0.7}]
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)
META = b"qup_resume"


def _json(x: Any) -> str:
    return json.dumps(x, sort_keys=True, default=str, ensure_ascii=False)


def digest(rows: Iterable) -> str:
    """sha256 of ``rows`` (dicts, a Dataset, or any JSON-able values), in order."""
    h = hashlib.sha256()
    n = 0
    for row in rows:
        h.update(_json(row).encode())
        h.update(b"\n")
        n += 1
    return f"{n}:{h.hexdigest()[:32]}"


def generator_identity(gen) -> dict:
    """What of a Generator changes its outputs: model, revision, dtype, engine, merged adapter."""
    if gen is None:
        return {}
    from .generation import engine_label
    try:
        engine = engine_label(gen)
    except Exception:        # a scripted or reference generator names no engine
        engine = type(gen).__name__
    return {"model_id": getattr(gen, "model_id", ""), "model_revision": getattr(gen, "model_revision", ""),
            "dtype": str(getattr(gen, "dtype", "")), "engine": engine,
            "merged": bool(getattr(gen, "merged", False))}


def _read_key(path: Path) -> dict | None:
    try:
        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta[META]) if META in meta else None
    except (OSError, ValueError, pa.ArrowException):
        return None          # unreadable or half-written: redone


def _changed(old: dict | None, new: dict) -> str:
    if old is None:
        return "no key (written before keys, or unreadable)"
    diff = sorted(k for k in set(old["settings"]) | set(new["settings"])
                  if old["settings"].get(k) != new["settings"].get(k))
    what = [f"settings {diff}"] if diff else []
    if old.get("input") != new["input"]:
        what.append("input rows")
    return " and ".join(what) or "key format"


def _write(path: Path, rows: list[dict], key: dict, features=None) -> None:
    from datasets import Dataset
    if rows:
        table = Dataset.from_list(rows, features=features).data.table
    elif features is not None:
        table = features.arrow_schema.empty_table()
    else:
        table = pa.table({})
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META: _json(key).encode()})
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)        # atomic: a killed run never leaves half a unit


def unit(path: str | Path | None, settings: dict, inputs: Iterable, make: Callable[[], list[dict]],
         features=None, what: str = "") -> list[dict]:
    """The rows of one unit of work: ``make()``'s, or those saved at ``path`` under the same key
    (``settings`` + a digest of ``inputs``). ``path`` None: no saving. ``features``: the
    ``datasets.Features`` the rows are saved with (inferred when None)."""
    if path is None:
        return make()
    path = Path(path)
    key = {"settings": json.loads(_json(settings)), "input": digest(inputs)}
    if path.exists():
        old = _read_key(path)
        if old == key:
            log.info("%s: reusing %s", what or path.stem, path.name)
            return pq.read_table(path).to_pylist()
        log.warning("%s: %s was made with other %s; removed, redoing", what or path.stem, path,
                    _changed(old, key))
        path.unlink()
    rows = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, rows, key, features)
    return rows
