"""``selected``: compatibility-aware selection (beyond the paper) — from a pool of scored variants,
keep per problem the rows a registered **criterion** ranks best (one function + one entry in
:data:`CRITERIA`; the recipe's ``criterion`` option names it):

- ``reward_nll`` (default): ``z(reward) − λ · z(nll)``, both standardised within the pool, so λ
  trades one standard deviation of perceived quality against one of learner NLL (λ = 0: the
  highest-reward rows; a large λ: the rows the learner finds most natural).
- ``grape``: the highest length-normalised learner log-probability among the problem's verified
  candidates from every source variant (GRAPE, Zhang et al., arXiv 2502.04194).
- ``rsr``: the lowest Rank-Surprisal Ratio (Yang et al., arXiv 2601.14249; lower teaches better).
- ``ifd``: the highest IFD (Cherry LLM, Li et al., arXiv 2308.12032: the hardest rows) below 1; rows
  with IFD >= 1, where the question does not lower the answer's loss, are counted and left out (our
  choice: Cherry LLM's selection script keeps such a filter commented out).
- ``mix``: Mix Distillation's baseline (Li et al., arXiv 2502.12143): Oracle-written rows (mode
  ``synth``/``refine``/``reference``) and the SLM's own trajectories at 1:4 (``oracle_share`` 0.2): every
  problem's SLM rows, then Oracle rows for a quarter as many, problems without an SLM row first.

Per problem at most ``max_per_problem`` rows are kept (exact duplicates across variants count
once); rows without the criterion's scores, and incorrect rows, are counted and left out. Each
kept row records its source variant and the criterion in ``mode`` (``"oracle_refine|grape"``,
``"rft|reward_nll|lambda=0.5"``).

This variant is built after ``score`` (``scored=True``): ``qup run`` scores its pool first.

Example:
    >>> select({"rft": rft_ds, "oracle_refine": refine_ds}, SelectConfig(criterion="grape"))  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from datasets import Dataset

from ..config import ConfigError
from . import Variant, register


@dataclass
class SelectConfig:
    pool: list[str] = field(default_factory=lambda: ["rft", "oracle_synth", "oracle_refine",
                                                     "style_aligned"],
                            metadata={"help": "variants to select from (scored first)", "hidden": True})
    criterion: str = field(default="reward_nll", metadata={"help": "reward_nll | grape | rsr | ifd | mix"})
    lam: float = field(default=1.0, metadata={"help": "λ of reward_nll: weight of the adaptation cost (>= 0)"})
    oracle_share: float = field(default=0.2, metadata={"help": "mix: share of Oracle rows (Mix Distillation 1:4)"})
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
        if self.criterion not in CRITERIA:
            raise ConfigError(f"selected: criterion {self.criterion!r} is not registered; "
                              f"registered: {sorted(CRITERIA)}")
        if not 0 < self.oracle_share < 1:
            raise ConfigError(f"selected: oracle_share must be in (0, 1), got {self.oracle_share}")


@dataclass(frozen=True)
class Criterion:
    """A selection rule: the score columns it reads and how it keeps rows (see module doc)."""
    name: str
    needs: tuple[str, ...]
    doc: str
    keep: Callable[[list[dict], "SelectConfig", Counter], list[dict]]


CRITERIA: dict[str, Criterion] = {}


def criterion(name: str, needs: tuple[str, ...], doc: str):
    """Register the decorated ``keep(rows, cfg, counts) -> rows`` as criterion ``name``."""
    def wrap(keep):
        CRITERIA[name] = Criterion(name, needs, doc, keep)
        return keep
    return wrap


def _z(values: list[float]) -> list[float]:
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [(v - mean) / sd if sd > 0 else 0.0 for v in values]


def _best(rows: list[dict], utility: list[float], cfg: SelectConfig) -> list[dict]:
    """The highest-``utility`` rows, at most ``cfg.max_per_problem`` per problem."""
    order = sorted(range(len(rows)), key=lambda i: -utility[i])
    kept, per_problem = [], Counter()
    for i in order:
        if per_problem[rows[i]["problem_id"]] < cfg.max_per_problem:
            per_problem[rows[i]["problem_id"]] += 1
            kept.append(rows[i])
    return kept


@criterion("reward_nll", ("reward", "nll"), "standardised reward − λ · learner NLL")
def _reward_nll(rows, cfg, counts):
    return _best(rows, [r - cfg.lam * n for r, n in zip(_z([x["reward"] for x in rows]),
                                                        _z([x["nll"] for x in rows]))], cfg)


@criterion("grape", ("grape",), "GRAPE: highest length-normalised learner log-probability")
def _grape(rows, cfg, counts):
    return _best(rows, [r["grape"] for r in rows], cfg)


@criterion("rsr", ("rsr",), "lowest Rank-Surprisal Ratio under the learner")
def _rsr(rows, cfg, counts):
    return _best(rows, [-r["rsr"] for r in rows], cfg)


@criterion("ifd", ("ifd",), "Cherry LLM: highest IFD below 1 (the question still helps)")
def _ifd(rows, cfg, counts):
    below = [r for r in rows if r["ifd"] < 1]
    counts["ifd_not_below_1"] += len(rows) - len(below)
    return _best(below, [r["ifd"] for r in below], cfg)


def _order(row: dict) -> str:       # a fixed pseudo-random order (no seed to choose)
    return hashlib.sha256(f"{row['problem_id']}\0{row['trace_id']}".encode()).hexdigest()


ORACLE_MODES = ("synth", "refine", "reference")   # rows the strong teacher wrote (or the dataset's own)


@criterion("mix", (), "Mix Distillation: Oracle and SLM trajectories at 1:4")
def _mix(rows, cfg, counts):
    oracle = sorted((r for r in rows if r["mode"] in ORACLE_MODES), key=_order)
    own = sorted((r for r in rows if r["mode"] not in ORACLE_MODES), key=_order)
    kept, per_problem = [], Counter()
    for r in own:
        if per_problem[r["problem_id"]] < cfg.max_per_problem:
            per_problem[r["problem_id"]] += 1
            kept.append(r)
    want = round(len(kept) * cfg.oracle_share / (1 - cfg.oracle_share))
    got = 0
    for r in sorted(oracle, key=lambda r: per_problem[r["problem_id"]] > 0):   # uncovered first
        if got < want and per_problem[r["problem_id"]] < cfg.max_per_problem:
            per_problem[r["problem_id"]] += 1
            kept.append(r)
            got += 1
    counts["mix_oracle_short"] += want - got
    return kept


def _tag(name: str, cfg: SelectConfig) -> str:
    """The kept row's ``mode``: its source variant and the criterion (with λ for reward_nll)."""
    return f"{name}|{cfg.criterion}" + (f"|lambda={cfg.lam:g}" if cfg.criterion == "reward_nll" else "")


def select(pool: dict[str, Dataset], cfg: SelectConfig, counts: Counter | None = None) -> Dataset:
    """The rows of the scored datasets in ``pool`` (variant name → Dataset) that ``cfg.criterion``
    keeps, at most ``cfg.max_per_problem`` per problem (see module doc)."""
    counts = Counter() if counts is None else counts
    crit = CRITERIA[cfg.criterion]
    rows, seen = [], set()
    for name, ds in pool.items():
        for c in crit.needs:
            if c not in ds.column_names:
                raise ConfigError(f"selected: variant {name!r} has no {c!r} column; run `qup score` on it "
                                  f"first (criterion {crit.name} needs {list(crit.needs)})")
        for row in ds:
            key = (row["problem_id"], " ".join(row["completion"].split()))
            if any(row[c] is None for c in crit.needs):
                counts["unscored"] += 1
            elif cfg.correct_only and not row["correct"]:
                counts["not_correct"] += 1
            elif key in seen:
                counts["duplicate"] += 1
            else:
                seen.add(key)
                rows.append({**row, "_source": name})
    if not rows:      # everything counted above; an empty variant, not an error
        from ..io import empty
        return empty(next(iter(pool.values())).features) if pool else Dataset.from_list([])
    kept, ids = [], Counter()
    for row in crit.keep(rows, cfg, counts):
        row = {**row, "mode": _tag(row["_source"], cfg)}
        source = row.pop("_source")
        ids[row["trace_id"]] += 1
        if ids[row["trace_id"]] > 1:   # the same parent trace, repaired by two variants
            row["trace_id"] = f"{row['trace_id']}~{source}"
        kept.append({**row, "variant": "selected", "parent_id": row["parent_id"] or row["trace_id"]})
    kept.sort(key=lambda r: (r["problem_id"], r["trace_id"]))
    features = next(iter(pool.values())).features
    return Dataset.from_list(kept, features=features)


def build(pool: dict[str, Dataset], config: SelectConfig | None = None, ctx=None) -> Dataset:
    return select(pool, config or SelectConfig(), ctx.counts if ctx is not None else None)


register(Variant("selected", "self", "compatibility-aware selection: per problem the pool's rows a "
                 "registered criterion ranks best (reward_nll, grape, rsr, ifd, mix)", build, SelectConfig,
                 scored=True))
