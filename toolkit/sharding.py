"""Shards of a stage's work (``--shard i/N``): N jobs or machines each do one part, a merge joins them.

A problem belongs to shard ``sha256(problem_id) mod N``: a stable hash of its id, so the split
depends neither on row order nor on Python's per-process ``hash`` seed, and every row of one
problem (all its samples, refinements and scores) lands in the same shard. ``sample`` splits by
*chunk* instead (``chunk=shard_size``): the problems, in input order, are cut into chunks of
``shard_size`` and chunk c goes to shard ``c mod N``. A chunk is what the SLM decodes together
(one resumable unit, mixed batches); a shard then decodes exactly the chunks an unsharded run
does, so its texts are the same bit for bit (float rounding depends on a batch's rows). A shard's output dir
holds ``qup_shard.json``: which shard it is, the stage's config (minus how it ran: endpoints,
batch sizes, paths), a digest of the whole input it was cut from, and the ids it covers with
their positions in that input, so :mod:`toolkit.stages.merge` can check that the shards fit.

Example:
    >>> s = Shard.parse("1/3")
    >>> (s.index, s.count, str(s))
    (1, 3, '1/3')
    >>> shard_index("svamp-test-0007", 3) == shard_index("svamp-test-0007", 3)
    True
    >>> Shard.parse("3/3")
    Traceback (most recent call last):
    toolkit.config.ConfigError: --shard '3/3': the index must be in 0..2 (shards are numbered from 0)
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .config import ConfigError

MARKER = "qup_shard.json"
_SPEC = re.compile(r"\s*(\d{1,9})\s*/\s*(\d{1,9})\s*")


def shard_index(problem_id: str, count: int) -> int:
    """The shard (0..count-1) that ``problem_id`` belongs to: sha256 of its UTF-8 bytes mod count."""
    digest = hashlib.sha256(str(problem_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0 <= index < count)."""
    index: int
    count: int

    def __post_init__(self):
        if self.count < 1:
            raise ConfigError(f"--shard '{self}': the number of shards must be >= 1")
        if not 0 <= self.index < self.count:
            raise ConfigError(f"--shard '{self}': the index must be in 0..{self.count - 1} "
                              "(shards are numbered from 0)")

    @classmethod
    def parse(cls, spec: "str | Shard | None") -> "Shard | None":
        """``"i/N"`` → ``Shard(i, N)``; ``None``/``""`` → ``None`` (no sharding)."""
        if spec is None or isinstance(spec, Shard):
            return spec
        if not str(spec).strip():
            return None
        m = _SPEC.fullmatch(str(spec))
        if not m:
            raise ConfigError(f"--shard {spec!r}: expected INDEX/COUNT, e.g. 0/4 (the first of 4 shards)")
        return cls(int(m.group(1)), int(m.group(2)))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, problem_id: str) -> bool:
        return shard_index(problem_id, self.count) == self.index

    def select(self, ds, column: str = "problem_id", chunk: int | None = None):
        """The rows of ``ds`` whose ``column`` (a problem id) belongs to this shard, in order
        (``chunk``: split by chunks of that many problems, see the module doc)."""
        if column not in ds.column_names:
            raise ConfigError(f"--shard: the data has no {column!r} column to split by")
        owners = assign(ds[column], self.count, chunk)
        return ds.select([i for i, s in enumerate(owners) if s == self.index])


def assign(ids: list[str], count: int, chunk: int | None = None) -> list[int]:
    """The shard of each row's problem id: by hash, or (``chunk``) by its problem's chunk.

    Example:
        >>> assign(["a", "a", "b", "c", "d"], 2, chunk=2)
        [0, 0, 0, 1, 1]
    """
    if not chunk:
        return [shard_index(i, count) for i in ids]
    rank: dict[str, int] = {}
    for i in ids:
        rank.setdefault(i, len(rank))
    chunks = -(-len(rank) // chunk)
    if count > chunks:
        raise ConfigError(f"--shard: {len(rank)} problems make {chunks} chunk(s) of {chunk} "
                          f"(shard_size), fewer than the {count} shards; use at most {chunks} "
                          "shards or a smaller --shard-size")
    return [(rank[i] // chunk) % count for i in ids]


def digest(ds, columns: Iterable[str]) -> str:
    """sha256 over ``columns`` of every row of ``ds`` in order: the identity of a stage's input."""
    h = hashlib.sha256()
    cols = [c for c in columns if c in ds.column_names]
    for row in ds.select_columns(cols).to_list() if cols else []:
        h.update(json.dumps([row[c] for c in cols], default=str).encode())
        h.update(b"\n")
    return f"{len(ds)}:{h.hexdigest()[:32]}"


def positions(ds, column: str) -> dict[str, int]:
    """First position of each value of ``column`` in ``ds`` (the order the merge restores)."""
    out: dict[str, int] = {}
    for i, value in enumerate(ds[column]):
        out.setdefault(value, i)
    return out


@dataclass
class Cut:
    """What a stage needs to record about the shard it took (see :func:`take`)."""
    shard: Shard
    input_digest: str
    input_problems: int
    problems: list[str]
    order_by: str
    order: dict[str, int]
    chunk: int | None = None
    chunks: dict[str, int] | None = None

    def record(self, out: str | Path, stage: str, config: dict, rows: int) -> dict:
        return write_marker(out, stage, self.shard, config, self.input_digest, self.input_problems,
                            self.problems, self.order_by, self.order, rows, self.chunks)


def take(ds, shard: Shard | None, column: str = "problem_id", order_by: str = "problem_id",
         digest_columns: Iterable[str] = ("problem_id", "trace_id", "completion"),
         chunk: int | None = None):
    """``(the rows of shard, its Cut)``; without a shard ``(ds, None)``.

    ``column`` holds the problem id of each input row; the output rows are put back in order by
    the input position of their ``order_by`` value (a problem id, or a trace id when the stage
    keeps one output row per input row). ``chunk``: split by chunks (see the module doc); the
    Cut's ``chunks`` maps each of its problems to its chunk in the whole input."""
    if shard is None:
        return ds, None
    part = shard.select(ds, column, chunk)
    where = positions(ds, order_by if order_by in ds.column_names else column)
    keys = part[order_by] if order_by in part.column_names else part[column]
    problems = list(dict.fromkeys(part[column]))
    chunks = None
    if chunk:
        rank = {pid: r for r, pid in enumerate(dict.fromkeys(ds[column]))}
        chunks = {pid: rank[pid] // chunk for pid in problems}
    cut = Cut(shard, digest(ds, digest_columns), len(set(ds[column])), problems,
              order_by, {k: where[k] for k in keys}, chunk, chunks)
    return part, cut


def write_marker(out: str | Path, stage: str, shard: Shard, config: dict, input_digest: str,
                 input_problems: int, problems: list[str], order_by: str, order: dict[str, int],
                 rows: int, chunks: dict[str, int] | None = None) -> dict:
    """Record in ``out/qup_shard.json`` which shard ``out`` holds and what it was made from.

    ``input_problems``: problems in the whole input; ``problems``: the shard's (all of them, also
    those that ended with no row); ``order``: the merge sorts rows by ``order[row[order_by]]``,
    the input position of the row's problem or trace (then by their order in the shard);
    ``chunks``: each problem's chunk, when the split was by chunk (shard = chunk mod count)."""
    data = {"stage": stage, "shard": str(shard), "index": shard.index, "count": shard.count,
            "config": json.loads(json.dumps(config, default=str, sort_keys=True)),
            "input": input_digest, "input_problems": input_problems, "rows": rows,
            "order_by": order_by, "problems": list(problems), "order": order,
            **({"chunks": chunks} if chunks is not None else {})}
    path = Path(out) / MARKER
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)
    return data


def read_marker(out: str | Path) -> dict | None:
    path = Path(out) / MARKER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as e:   # UnicodeDecodeError is a ValueError
        raise ConfigError(f"{path}: not valid JSON ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def check_out(out: str | Path, shard: Shard | None, stage: str) -> None:
    """Refuse to write shard ``shard`` into a dir that holds another shard's (or an unsharded)
    output: resumable work there would mix two shards."""
    m = read_marker(out)
    if m and (m.get("stage") != stage or m.get("shard") != (str(shard) if shard else None)):
        raise ConfigError(f"{out} holds shard {m.get('shard')} of {m.get('stage')}; write "
                          f"{f'shard {shard}' if shard else 'the unsharded output'} into another dir")
