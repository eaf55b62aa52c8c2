"""``rft``: rejection-sampling fine-tuning data — the SLM's own traces that verify as correct.
A trace cut at the token limit (``finish_reason == "length"``) is never kept, even when its last
number matches the gold answer: it states no final answer, and in the cpu-study's first run 27% of
the SmolLM2 traces graded correct were such fragments ("... 7 + 16 = 12. 5. To find the total").

Keeps correct traces, drops exact duplicates (after whitespace normalisation) and near
duplicates (word 3-gram Jaccard similarity ≥ ``near_dup_threshold`` to a kept trace of the same
problem), and caps the traces kept per problem.

Example:
    >>> rft(load("runs/x/variants/self"), RftConfig(max_per_problem=2))        # doctest: +SKIP
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from datasets import Dataset

from ..config import ConfigError
from ..stages.verify import verify
from . import Variant, register


@dataclass
class RftConfig:
    max_per_problem: int = field(default=4, metadata={"help": "keep at most this many per problem"})
    near_dup_threshold: float = field(default=0.9, metadata={"help": "3-gram Jaccard above which "
                                                              "two traces are near duplicates"})

    def __post_init__(self):
        if self.max_per_problem < 1:
            raise ConfigError(f"max_per_problem must be >= 1, got {self.max_per_problem}")
        if not 0 < self.near_dup_threshold <= 1:
            raise ConfigError(f"near_dup_threshold must be in (0, 1], got {self.near_dup_threshold}")


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+|[^\w\s]", text.lower())
    return {tuple(words[i:i + 3]) for i in range(max(1, len(words) - 2))}


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def rft(ds: Dataset, cfg: RftConfig, counts: Counter | None = None) -> Dataset:
    """Correct, complete, de-duplicated traces, at most ``cfg.max_per_problem`` per problem."""
    out = keep_correct(ds, cfg, counts)
    return out.map(lambda r: {"variant": "rft", "parent_id": r["trace_id"]}, desc="rft",
                   load_from_cache_file=False)


def keep_correct(ds: Dataset, cfg: RftConfig, counts: Counter | None = None) -> Dataset:
    """The rows of ``ds`` that verify as correct and ended on their own (not cut at the token
    limit: counted in ``counts["cut_at_token_limit"]``), exact and near duplicates dropped, capped
    per problem (shared by every variant that keeps verified traces)."""
    if "" in set(ds["verify_status"]):  # unverified input (e.g. raw samples): verify it once
        ds = verify(ds)
    kept: dict[str, list[tuple[str, set]]] = {}
    keep = []
    for i, row in enumerate(ds):
        if not row["correct"]:
            continue
        if row["finish_reason"] == "length":
            if counts is not None:
                counts["cut_at_token_limit"] += 1
            continue
        norm = " ".join(row["completion"].split())
        shingles = _shingles(norm)
        seen = kept.setdefault(row["problem_id"], [])
        if len(seen) >= cfg.max_per_problem or any(
                norm == n or _jaccard(shingles, s) >= cfg.near_dup_threshold for n, s in seen):
            continue
        seen.append((norm, shingles))
        keep.append(i)
    return ds.select(keep)


def build(parent: Dataset, config: RftConfig | None = None, ctx=None) -> Dataset:
    return rft(parent, config or RftConfig(), ctx.counts if ctx is not None else None)


register(Variant("rft", "self", "rejection-sampling fine-tuning data: verified-correct, "
                 "de-duplicated SLM traces", build, RftConfig, version=2))
