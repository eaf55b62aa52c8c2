"""``merge``: join the N shard outputs of one stage (``--shard i/N``) into the whole dataset.

Checks before writing anything: every dir is a shard output (``qup_shard.json``) of the same
stage, cut from the same input, with the same config apart from the shard; shards 0..N-1 are all
there, each exactly once; each problem is in the shard its id hashes to (or its chunk maps to,
for ``sample``) and in one shard only;
the shards together cover every problem of the input; no ``trace_id`` appears twice; each
shard holds the rows its marker promises. The union is ordered as the unsharded stage orders
its rows (by the input position of each row's problem, or trace for ``score``), so a merged
``sample`` equals an unsharded one row for row. ``qup merge --publish REPO`` then publishes the
union as one atomic commit (``toolkit.publishing.publish.publish_dataset``).

Example:
    >>> merge_command(["runs/s0", "runs/s1"], "runs/samples")                 # doctest: +SKIP
    {'out': 'runs/samples', 'name': 'self', 'stage': 'sample', 'shards': 2, 'rows': 96, ...}
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

from datasets import Dataset, concatenate_datasets

from ..errors import QupError
from ..io import empty, load, save
from ..sharding import MARKER, read_marker, shard_index

MERGE_MARKER = "qup_merge.json"


class MergeError(QupError, ValueError):
    """The shard dirs given to merge do not make one whole dataset (missing, duplicated, mixed)."""


def _markers(dirs: list[str | Path]) -> list[tuple[str, dict]]:
    if not dirs:
        raise MergeError("merge: give the shard output dirs (qup merge DIR... --out DIR)")
    out = []
    for d in map(str, dirs):
        if not Path(d).is_dir():
            raise MergeError(f"merge: {d} is not a directory")
        m = read_marker(d)
        if m is None:
            raise MergeError(f"merge: {d} is not a shard output (no {MARKER}); make shards with "
                             "--shard i/N")
        _check_marker(d, m)
        out.append((d, m))
    return out


# the fields merge reads from each marker, and their JSON types
_FIELDS = {"stage": str, "shard": str, "index": int, "count": int, "input": str, "input_problems": int,
           "rows": int, "order_by": str, "problems": list, "order": dict, "config": dict}


def _check_marker(d: str, m: dict) -> None:
    """Refuse a marker whose fields merge relies on are missing or of the wrong type."""
    where = f"merge: {d}: {MARKER}"
    for key, tp in _FIELDS.items():
        value = m.get(key)
        if not isinstance(value, tp) or isinstance(value, bool):
            raise MergeError(f"{where}: field {key!r} must be a JSON {tp.__name__}, got {value!r:.80}")
    if m["count"] < 1 or not 0 <= m["index"] < m["count"] or m["rows"] < 0 or m["input_problems"] < 0:
        raise MergeError(f"{where}: shard {m['index']}/{m['count']}, rows {m['rows']}, input_problems "
                         f"{m['input_problems']}: out of range")
    if not all(isinstance(p, str) for p in m["problems"]):
        raise MergeError(f"{where}: field 'problems' must be a list of strings")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in m["order"].values()):
        raise MergeError(f"{where}: field 'order' must map keys to integer positions")
    if m.get("chunks") is not None and not isinstance(m["chunks"], dict):
        raise MergeError(f"{where}: field 'chunks' must be a JSON object")


def _check_same(markers: list[tuple[str, dict]]) -> None:
    (d0, m0) = markers[0]
    for d, m in markers[1:]:
        for key, what in (("stage", "stage"), ("count", "number of shards"), ("input", "input")):
            if m.get(key) != m0.get(key):
                raise MergeError(f"merge: {d} and {d0} differ in {what}: {m.get(key)!r} vs {m0.get(key)!r}")
        if m["config"] != m0["config"]:
            diff = sorted(k for k in set(m["config"]) | set(m0["config"])
                          if m["config"].get(k) != m0["config"].get(k))
            raise MergeError(f"merge: {d} and {d0} were made with different configs "
                             f"(field(s) {diff}); every shard must run the same command but --shard")


def _check_complete(markers: list[tuple[str, dict]]) -> None:
    n = markers[0][1]["count"]
    seen: dict[int, str] = {}
    for d, m in markers:
        if m["index"] in seen:
            raise MergeError(f"merge: shard {m['shard']} is given twice ({seen[m['index']]} and {d})")
        seen[m["index"]] = d
    missing = [f"{i}/{n}" for i in itertools.islice((i for i in range(n) if i not in seen), 10)]
    if missing:
        more = ", …" if n - len(seen) > len(missing) else ""
        raise MergeError(f"merge: shard(s) {', '.join(missing)}{more} missing (have "
                         f"{', '.join(f'{i}/{n}' for i in sorted(seen))})")
    owner: dict[str, str] = {}
    for d, m in markers:
        chunks = m.get("chunks")
        for pid in m["problems"]:
            want = shard_index(pid, n) if chunks is None else _chunk_shard(d, chunks, pid, n)
            if want != m["index"]:
                raise MergeError(f"merge: {d} (shard {m['shard']}) holds problem {pid!r}, which "
                                 f"belongs to shard {want}/{n}")
            if pid in owner:
                raise MergeError(f"merge: problem {pid!r} is in both {owner[pid]} and {d}")
            owner[pid] = d
    total = markers[0][1]["input_problems"]
    if len(owner) != total:
        raise MergeError(f"merge: the shards cover {len(owner)} of the input's {total} problems")


def _chunk_shard(d: str, chunks: dict, pid: str, n: int) -> int:
    chunk = chunks.get(pid)
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 0:
        raise MergeError(f"merge: {d}: {MARKER} gives problem {pid!r} no valid chunk")
    return chunk % n


def _load(d: str, m: dict) -> Dataset:
    """The shard's rows; unreadable data (a truncated .arrow, ...) or missing columns: one line."""
    try:
        ds = load(d)
    except QupError:
        raise
    except Exception as e:  # noqa: BLE001 - pyarrow/datasets raise many types for damaged files
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise MergeError(f"merge: {d}: cannot read the shard's data ({type(e).__name__}: {msg})") from None
    missing = sorted({"problem_id", "trace_id", m["order_by"]} - set(ds.column_names))
    if missing:
        raise MergeError(f"merge: {d}: the data has no column(s) {missing}")
    return ds


def _check_out(out: str | Path, dirs: list[str | Path]) -> None:
    """``--out`` must be a new or output dir, never a shard dir (or inside one) nor a file."""
    target = Path(out).resolve()
    if target.exists() and not target.is_dir():
        raise MergeError(f"merge: --out {out} exists and is not a directory")
    for d in dirs:
        if target == Path(d).resolve() or Path(d).resolve() in target.parents:
            raise MergeError(f"merge: --out {out} is (inside) the shard dir {d}; write the union elsewhere")


def merge(dirs: list[str | Path]) -> tuple[Dataset, dict]:
    """The union of the shard outputs ``dirs`` (checked, see the module doc) and its summary."""
    markers = _markers(dirs)
    _check_same(markers)
    _check_complete(markers)
    parts, trace_owner = [], {}
    for d, m in markers:
        ds = _load(d, m)
        if len(ds) != m["rows"]:
            raise MergeError(f"merge: {d} holds {len(ds)} rows but its {MARKER} says {m['rows']} "
                             "(an incomplete or changed shard)")
        problems = set(m["problems"])
        for i, (pid, tid) in enumerate(zip(ds["problem_id"], ds["trace_id"])):
            if pid not in problems:
                raise MergeError(f"merge: {d} row {i} (trace {tid!r}) is of problem {pid!r}, "
                                 f"which is not in shard {m['shard']}")
            if tid in trace_owner:
                raise MergeError(f"merge: trace {tid!r} is duplicated ({trace_owner[tid]} and {d})")
            trace_owner[tid] = d
        parts.append((d, m, ds))
    features = parts[0][2].features
    for d, _, ds in parts[1:]:
        if ds.features != features:
            raise MergeError(f"merge: {d} has other columns or types than {parts[0][0]}")
    # back into the unsharded order: by the input position of each row's key, then shard order
    keyed = []
    for s, (d, m, ds) in enumerate(parts):
        order, col = m["order"], m["order_by"]
        for i, key in enumerate(ds[col]):
            if key not in order:
                raise MergeError(f"merge: {d} row {i}: {col} {key!r} has no position in its {MARKER}")
            keyed.append((order[key], s, i))
    keyed.sort()
    whole = concatenate_datasets([ds for _, _, ds in parts]) if parts else empty(features)
    offsets, total = [], 0
    for _, _, ds in parts:
        offsets.append(total)
        total += len(ds)
    whole = whole.select([offsets[s] + i for _, s, i in keyed]) if len(whole) else whole
    m0 = markers[0][1]
    info = {"stage": m0["stage"], "shards": m0["count"], "rows": len(whole),
            "problems": sum(len(m["problems"]) for _, m in markers), "input": m0["input"],
            "config": m0["config"], "from": [d for d, _ in sorted(markers, key=lambda x: x[1]["index"])]}
    return whole, info


def merge_command(dirs: list[str | Path], out: str | Path) -> dict:
    """``qup merge``: merge ``dirs`` into ``out`` (``out/data`` + ``qup_merge.json``); returns
    the summary, with ``name``: the config name to publish the union under (its rows' variant,
    else the stage). Publishing (``qup merge --publish``) is the CLI's next call."""
    if not out:
        raise MergeError("merge: --out is required")
    _check_out(out, dirs)
    ds, info = merge(dirs)
    try:
        save(ds, out)
        (Path(out) / MERGE_MARKER).write_text(json.dumps(info, indent=2, default=str))
    except OSError as e:
        raise MergeError(f"merge: cannot write --out {out}: {e.strerror or e}") from None
    variants = set(ds["variant"]) if "variant" in ds.column_names else set()
    return {"out": str(out), "name": variants.pop() if len(variants) == 1 else info["stage"],
            **{k: v for k, v in info.items() if k != "config"}}
