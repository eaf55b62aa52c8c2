"""What the Oracle variants share: asking the Oracle in resumable shards, deriving TRACE rows with
their Oracle provenance, and measuring how far a row moved from its parent.

Example:
    >>> edit_stats(str.split, "a b c d", "a x c d e")   # 2 of 5 tokens changed or added
    (0.4, 0.4)
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable

from datasets import Dataset

from ..generation import Request, SamplingParams
from ..io import empty
from ..resume import generator_identity, unit
from ..schema import TRACE
from . import BuildContext

log = logging.getLogger(__name__)
# options that choose which rows go in or stay out: a shard's answers do not depend on them
SELECTION = ("traces_per_problem", "max_per_problem", "near_dup_threshold")


def problems_of(parent: Dataset) -> list[dict]:
    """One row per problem of ``parent`` (its first trace), in first-seen order."""
    seen: dict[str, dict] = {}
    for row in parent:
        seen.setdefault(row["problem_id"], row)
    return list(seen.values())


def first_per_problem(rows: list[dict], n: int | None) -> list[dict]:
    """The first ``n`` rows of each problem (all of them when ``n`` is None): the Oracle's budget.
    Rank-major (every problem's first row, then every second row, ...), so raising ``n`` keeps
    the shards already asked.

    Example:
        >>> rows = [{"problem_id": p, "i": i} for p in "ab" for i in range(3)]
        >>> [(r["problem_id"], r["i"]) for r in first_per_problem(rows, 2)]
        [('a', 0), ('b', 0), ('a', 1), ('b', 1)]
    """
    if n is None:
        return rows
    ranks: list[list[dict]] = [[] for _ in range(n)]
    seen: dict[str, int] = {}
    for row in rows:
        rank = seen[row["problem_id"]] = seen.get(row["problem_id"], 0) + 1
        if rank <= n:
            ranks[rank - 1].append(row)
    return [row for rank in ranks for row in rank]


def tokens(ctx: BuildContext, text: str) -> list:
    """``text`` as the learner's tokens (the SLM tokenizer): counts and edits are in the unit
    ``qup run`` and ``qup <variant>`` share."""
    if ctx.tokenize is None:
        from ..config import ConfigError
        raise ConfigError("an Oracle variant counts the learner's tokens: give BuildContext.tokenize "
                          "(the SLM's tokenizer)")
    return ctx.tokenize(text)


def edit_stats(tokenize: Callable[[str], list], parent: str, new: str) -> tuple[float, float]:
    """``(normalised token edit distance, share of new's tokens not copied from parent)``."""
    from rapidfuzz.distance import Levenshtein
    a, b = tokenize(parent), tokenize(new)
    if not b:
        return (0.0 if not a else 1.0), 0.0
    written = sum(op.dest_end - op.dest_start for op in Levenshtein.opcodes(a, b)
                  if op.tag in ("replace", "insert"))
    return round(Levenshtein.normalized_distance(a, b), 4), round(written / len(b), 4)


def derive(base: dict, completion: str, ctx: BuildContext, **fields) -> dict:
    """A TRACE row made from ``base`` (a parent trace or a problem's first trace) with a new
    ``completion``; ``fields`` set the variant, mode, ids and Oracle provenance."""
    row = {k: base.get(k) for k in TRACE}
    row.update(completion=completion, completion_tokens=len(tokens(ctx, completion)), answer="",
               correct=False, verify_status="", finish_reason=fields.pop("finish_reason", "stop"),
               edit_distance=None, oracle_token_share=None)
    row.update(fields)
    return row


def model_oracle(ctx: BuildContext, variant: str):
    """The Oracle role, which must be a model (the ``reference`` Oracle only writes oracle_synth)."""
    from ..config import ConfigError
    from ..generation.roles import ReferenceOracle
    oracle = ctx.role("oracle")
    if isinstance(oracle, ReferenceOracle):
        raise ConfigError(f"{variant} needs a model as Oracle (the `reference` Oracle only serves "
                          "oracle_synth)")
    return oracle


def oracle_identity(oracle) -> dict:
    return {"oracle_model_id": oracle.model_id, "oracle_model_revision": oracle.model_revision}


def sampling(cfg, seed: int | None = None) -> SamplingParams:
    """Sampling params from a variant config's ``temperature``/``top_p``/``max_new_tokens``."""
    return SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                          top_p=cfg.top_p, do_sample=cfg.temperature > 0, seed=seed)


def ask(oracle, prompts: list[str], params: list[SamplingParams]) -> list:
    """One Oracle completion per prompt (batched, cached and retried by the Generator)."""
    return oracle.generate([Request(p, sp) for p, sp in zip(prompts, params)])


def settings(cfg, *generators, prompts: Iterable = ()) -> dict:
    """What decides an Oracle variant's shard besides its input rows: the variant's options (less
    :data:`SELECTION`), the identity of each model it asks and its prompt templates (ids carry
    their text's hash)."""
    from ..config import keyed
    options = {k: v for k, v in keyed(cfg).items() if k not in SELECTION} if cfg is not None else None
    return {"options": options,
            "models": [generator_identity(g) for g in generators],
            "prompts": [p.id if hasattr(p, "id") else str(p) for p in prompts]}


def sharded(items: list, fn: Callable[[list], list[dict]], ctx: BuildContext, key: dict | None = None,
            size: int = 64, desc: str = "oracle") -> Dataset:
    """``fn`` over ``items`` in shards of ``size``; each finished shard is saved under
    ``ctx.workdir`` so a killed build resumes where it stopped, and reused only under the same
    ``key`` (:func:`settings`) and input items: another Oracle, option or parent data redoes it
    (:mod:`toolkit.resume`). Returns the TRACE rows of all shards."""
    rows: list[dict] = []
    workdir = Path(ctx.workdir) / "shards" if ctx.workdir else None
    n = -(-len(items) // size)
    for s, start in enumerate(range(0, len(items), size)):
        part = items[start:start + size]
        path = workdir / f"shard-{s:05d}.parquet" if workdir else None

        def make(part=part, s=s):
            log.info("%s shard %d/%d: %d items", desc, s + 1, n, len(part))
            return fn(part)
        rows.extend(unit(path, {"desc": desc, **(key or {})}, part, make, TRACE, f"{desc} shard {s + 1}/{n}"))
    return _rows_ds(rows)


def _rows_ds(rows: list[dict]) -> Dataset:
    return Dataset.from_list(rows, features=TRACE) if rows else empty(TRACE)


def count_empty(ctx: BuildContext, texts: Iterable[str], what: str) -> None:
    """Count Oracle answers that came back empty (reported, never silently dropped)."""
    empty = sum(not (t or "").strip() for t in texts)
    if empty:
        ctx.counts[what] += empty
