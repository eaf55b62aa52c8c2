"""``selected``: compatibility-aware selection (beyond the paper) — from a pool of scored variants,
keep the rows with the best ``quality − λ · adaptation cost``.

Both terms are standardised within the pool (z-scores of ``reward`` and ``nll``), so λ trades one
standard deviation of perceived quality against one of learner NLL: λ = 0 keeps the
highest-reward rows, a large λ the rows the learner finds most natural. Per problem at most
``max_per_problem`` rows are kept (exact duplicates across variants count once); rows without a
reward or an NLL, and incorrect rows, are counted and left out. Each kept row records its source
variant and λ in ``mode`` (``"oracle_refine|lambda=0.5"``).

This variant is built after ``score`` (``scored=True``): ``qup run`` scores its pool first.

Example:
    >>> select({"rft": rft_ds, "oracle_refine": refine_ds}, SelectConfig(lam=0.5))  # doctest: +SKIP
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from datasets import Dataset

from ..config import ConfigError
from . import Variant, register


@dataclass
class SelectConfig:
    pool: list[str] = field(default_factory=lambda: ["rft", "oracle_synth", "oracle_refine",
                                                     "style_aligned"],
                            metadata={"help": "variants to select from (scored first)", "hidden": True})
    lam: float = field(default=1.0, metadata={"help": "λ: weight of the adaptation cost (>= 0)"})
    max_per_problem: int = field(default=1, metadata={"help": "keep at most this many per problem"})
    correct_only: bool = field(default=True, metadata={"help": "keep only verified-correct rows"})

    def __post_init__(self):
        if not self.pool:
            raise ConfigError("selected: pool must name at least one variant")
        if "selected" in self.pool:
            raise ConfigError("selected: the pool cannot contain `selected` itself")
        if not (self.lam >= 0 and math.isfinite(self.lam)):
            raise ConfigError(f"selected: lam must be a finite number >= 0, got {self.lam}")
        if self.max_per_problem < 1:
            raise ConfigError(f"selected: max_per_problem must be >= 1, got {self.max_per_problem}")


def _z(values: list[float]) -> list[float]:
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [(v - mean) / sd if sd > 0 else 0.0 for v in values]


def select(pool: dict[str, Dataset], cfg: SelectConfig, counts: Counter | None = None) -> Dataset:
    """The rows of the scored datasets in ``pool`` (variant name → Dataset) that maximise
    ``z(reward) − λ·z(nll)``, at most ``cfg.max_per_problem`` per problem (see module doc)."""
    counts = Counter() if counts is None else counts
    rows, seen = [], set()
    for name, ds in pool.items():
        for c in ("reward", "nll"):
            if c not in ds.column_names:
                raise ConfigError(f"selected: variant {name!r} has no {c!r} column; run `qup score` on it first")
        for row in ds:
            key = (row["problem_id"], " ".join(row["completion"].split()))
            if row["reward"] is None or row["nll"] is None:
                counts["unscored"] += 1
            elif cfg.correct_only and not row["correct"]:
                counts["not_correct"] += 1
            elif key in seen:
                counts["duplicate"] += 1
            else:
                seen.add(key)
                rows.append({**row, "mode": f"{name}|lambda={cfg.lam:g}"})
    if not rows:
        return Dataset.from_list([], features=next(iter(pool.values())).features) if pool else Dataset.from_list([])
    utility = [r - cfg.lam * n for r, n in zip(_z([x["reward"] for x in rows]), _z([x["nll"] for x in rows]))]
    order = sorted(range(len(rows)), key=lambda i: -utility[i])
    kept, per_problem, ids = [], Counter(), Counter()
    for i in order:
        row = rows[i]
        if per_problem[row["problem_id"]] >= cfg.max_per_problem:
            continue
        per_problem[row["problem_id"]] += 1
        ids[row["trace_id"]] += 1
        if ids[row["trace_id"]] > 1:   # the same parent trace, repaired by two variants
            row = {**row, "trace_id": f"{row['trace_id']}~{row['mode'].split('|')[0]}"}
        kept.append({**row, "variant": "selected",
                     "parent_id": row["parent_id"] or row["trace_id"]})
    kept.sort(key=lambda r: (r["problem_id"], r["trace_id"]))
    features = next(iter(pool.values())).features
    return Dataset.from_list(kept, features=features)


def build(pool: dict[str, Dataset], config: SelectConfig | None = None, ctx=None) -> Dataset:
    return select(pool, config or SelectConfig(), ctx.counts if ctx is not None else None)


register(Variant("selected", "self", "compatibility-aware selection: the pool's rows with the best "
                 "standardised reward − λ · learner NLL", build, SelectConfig, scored=True))
