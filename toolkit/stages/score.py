"""``score``: perceived quality, adaptation cost and drift of every row of a trace dataset,
before any training (the paper's mechanism, measured per row).

Adds every registered diagnostic column (:mod:`toolkit.diagnostics.columns`: ``reward``,
``nll``, the drift columns and any registered since), each metric whose models the run has
(a judge or reward model, the learner, the ``self`` reference). Work goes in shards of rows;
a killed run resumes from the finished shards. Rows whose (prompt, question, completion) the same
:class:`Scorers` already scored are not scored again: ``rft`` and the pass-through rows
of ``style_aligned`` are the SLM's own traces.

Example:
    >>> cfg = ScoreConfig(data="runs/x/variants/rft", reference="runs/x/variants/self",
    ...                   learner=RoleConfig("tiny-random"), judge=RoleConfig("tiny-random"),
    ...                   out="runs/x/scores/rft")
    >>> score_command(cfg)["diagnostics"]["nll"]                               # doctest: +SKIP
    2.31
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..config import ConfigError, volatile
from ..diagnostics import columns as C, drift as D
from ..diagnostics.columns import Models
from ..diagnostics.reward import Judge, RewardModel
from ..generation.roles import RoleConfig
from ..resume import digest, generator_identity, unit

log = logging.getLogger(__name__)
REWARDS = ("judge", "classifier", "none")


def _h(text: str, **more) -> dict:
    return {"help": text, **more}


@dataclass
class ScoreConfig:
    data: str = volatile("", "trace dataset dir to score")
    out: str = volatile("", "output dir: the rows with the score columns")
    reference: str = volatile("", "the SLM's own traces (a `self` dir) for drift; '' = no drift "
                                  "(its rows' digest is keyed, not its path)")
    learner: RoleConfig = field(default_factory=RoleConfig, metadata=_h(
        "the SLM whose NLL is the adaptation cost (--learner-model, --learner-backend, ...); '' = none",
        prefix=True))
    reward: str = field(default="judge", metadata=_h("judge | classifier | none"))
    judge: RoleConfig = field(default_factory=RoleConfig, metadata=_h(
        "the judge (reward=judge): --judge-model, --judge-backend, ...", prefix=True))
    judge_template: str = field(default="judge_yes_no", metadata=_h("the judge's prompt template"))
    min_verdict_mass: float = field(default=0.5, metadata=_h(
        "rows where the judge puts less than this probability on Yes+No get no reward (counted)"))
    reward_model: str = field(default="", metadata=_h("sequence-classification RM (reward=classifier)"))
    embedder: str = field(default=D.EMBEDDER, metadata=_h("sentence embedder for embed_cosine; '' = skip"))
    batch_size: int = volatile(8, "sequences per forward pass (reward=classifier)")
    dtype: str = field(default="auto", metadata=_h("auto | float32 | bfloat16 (reward=classifier)"))
    shard_size: int = volatile(64, "rows per resumable shard")

    # the flat keys before the judge and the learner were roles
    __moved__ = {"judge_endpoints": "judge.endpoint.urls", "learner_endpoints": "learner.endpoint.urls",
                 "backend": "judge.backend and learner.backend", "vllm": "judge.vllm and learner.vllm"}

    def __post_init__(self):
        self.judge, self.learner = (RoleConfig(r) if isinstance(r, str) else r for r in (self.judge, self.learner))
        if self.reward not in REWARDS:
            raise ConfigError(f"score: reward must be one of {REWARDS}, got {self.reward!r}")
        if self.reward == "judge" and not self.judge.enabled:
            raise ConfigError("score: reward=judge needs --judge-model MODEL (or --reward none)")
        if "reference" in (self.judge.backend, self.learner.backend):
            raise ConfigError("score: the judge and the learner must be models, not `reference`")
        if self.reward == "classifier" and not self.reward_model:
            raise ConfigError("score: reward=classifier needs --reward-model MODEL")
        if not 0 <= self.min_verdict_mass <= 1:
            raise ConfigError(f"score: min_verdict_mass must be in [0, 1], got {self.min_verdict_mass}")
        if self.batch_size < 1 or self.shard_size < 1:
            raise ConfigError("score: batch_size and shard_size must be >= 1")


@dataclass
class Scorers:
    """The models ``score`` uses (each optional), made once and shared across datasets."""
    reward: Judge | RewardModel | None = None
    learner: object | None = None      # a Generator
    embedder: D.Embedder | None = None
    min_verdict_mass: float = 0.5
    shard_size: int = 64
    memo: dict = field(default_factory=dict)   # (prompt_id, question, completion) -> {column: value}

    @classmethod
    def from_config(cls, cfg: ScoreConfig, memo: dict | None = None) -> "Scorers":
        """Each model of ``cfg`` built once by its role (``memo``: scores shared across datasets)."""
        reward = None
        if cfg.reward == "judge":
            reward = Judge(cfg.judge.generator(), cfg.judge_template)
        elif cfg.reward == "classifier":
            reward = RewardModel(cfg.reward_model, cfg.batch_size, cfg.dtype)
        learner = cfg.learner.generator() if cfg.learner.enabled else None
        embedder = D.Embedder(cfg.embedder) if cfg.embedder and cfg.reference else None
        return cls(reward, learner, embedder, cfg.min_verdict_mass, cfg.shard_size,
                   {} if memo is None else memo)

    def settings(self) -> dict:
        """What of these models changes a score: part of a shard's key (:mod:`toolkit.resume`)."""
        reward = self.reward
        return {"reward": {"kind": reward.kind, "model": reward.model_id,
                           "template": getattr(getattr(reward, "template", None), "id", ""),
                           **generator_identity(getattr(reward, "generator", None))} if reward else None,
                "min_verdict_mass": self.min_verdict_mass, "learner": generator_identity(self.learner),
                "embedder": getattr(self.embedder, "name", "") if self.embedder else "",
                "columns": C.names()}


def roles_engine(cfg: ScoreConfig) -> str:
    """What serves the judge and the learner (``judge: vllm 0.32.0, learner: ...``): keyed."""
    return ", ".join(f"{n}: {r.engine()}" for n, r in (("judge", cfg.judge), ("learner", cfg.learner))
                     if r.enabled and (n != "judge" or cfg.reward == "judge"))


def memo_key(row: dict) -> tuple:
    return row["prompt_id"], row["question"], row["completion"]


def _score_rows(rows: list[dict], s: Scorers, reference, counts: Counter) -> list[dict]:
    """Every registered diagnostic column of ``rows`` (:mod:`toolkit.diagnostics.columns`); a
    metric whose models the run lacks leaves its columns null. Per-text metrics go through the memo."""
    models = Models(s.reward, s.learner, s.embedder, reference, counts, s.min_verdict_mass)
    values: dict[str, list] = {c.name: [None if c.dtype != "string" else ""] * len(rows)
                               for c in C.columns()}
    for metric in C.metrics():
        if not models.has(metric.needs):
            continue
        names = [c.name for c in metric.columns]
        if not metric.per_text:
            values.update(metric(rows, models))
            continue
        todo = list({memo_key(r): r for r in rows
                     if not set(names) <= set(s.memo.get(memo_key(r), ()))}.values())
        if todo:
            got = metric(todo, models)
            for i, r in enumerate(todo):
                s.memo.setdefault(memo_key(r), {}).update({n: got[n][i] for n in names})
        for n in names:
            values[n] = [s.memo[memo_key(r)][n] for r in rows]
    return [{"trace_id": r["trace_id"], **{n: v[i] for n, v in values.items()}} for i, r in enumerate(rows)]


def score(ds, scorers: Scorers, reference=None, workdir: str | Path | None = None,
          counts: Counter | None = None, desc: str = "score"):
    """``ds`` with the score columns filled (see module doc); ``reference``: the ``self`` rows
    for drift (None: drift columns stay null). Finished shards are kept in ``workdir/shards``,
    each reused only by the same models, reference and input rows (:mod:`toolkit.resume`)."""
    from datasets import Dataset, Features

    from ..io import empty
    counts = Counter() if counts is None else counts
    rows = ds.to_list()
    shard_dir = Path(workdir) / "shards" if workdir else None
    settings = {**scorers.settings(), "reference": digest(reference) if reference is not None else ""}
    size = 64 if not rows else max(1, min(len(rows), scorers.shard_size))
    scored: list[dict] = []
    bar = tqdm(total=len(rows), desc=desc, unit="row")
    start, tokens = time.perf_counter(), 0
    for n, k in enumerate(range(0, len(rows), size)):
        chunk = rows[k:k + size]
        path = shard_dir / f"shard-{n:05d}.parquet" if shard_dir else None
        scored.extend(unit(path, settings, chunk, lambda: _score_rows(chunk, scorers, reference, counts),
                           what=f"{desc} shard {n}"))
        tokens += sum(r["completion_tokens"] for r in chunk)
        bar.update(len(chunk))
        bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - start, 1e-9):.0f}")
    bar.close()
    by_id = {r["trace_id"]: r for r in scored}
    features = {**ds.features, **C.features()}
    out = [{**row, **{c: by_id[row["trace_id"]][c] for c in C.names()}} for row in rows]
    return Dataset.from_list(out, features=Features(features)) if out else empty(Features(features))


def score_command(cfg: ScoreConfig, scorers: Scorers | None = None, shard=None) -> dict:
    """``qup score``: load ``cfg.data`` (and ``cfg.reference``), score, save to ``cfg.out``;
    return the statistics (means of every diagnostic) and what was counted.

    ``shard`` (``"i/N"``): score only the rows of the problems in shard i of N, recorded in
    ``cfg.out/qup_shard.json`` for ``qup merge`` (see :mod:`toolkit.sharding`)."""
    from ..config import keyed
    from ..io import load, save
    from ..sharding import Shard, check_out, digest, take
    from ..stats import trace_stats
    shard = Shard.parse(shard)
    if not cfg.data or not cfg.out:
        raise ConfigError("score: --data (a trace dataset dir) and --out are required")
    ds = load(cfg.data)
    missing = [c for c in ("trace_id", "question", "completion", "prompt_id", "problem_id",
                           "completion_tokens") if c not in ds.column_names]
    if missing:
        raise ConfigError(f"score: {cfg.data} lacks column(s) {missing}")
    check_out(cfg.out, shard, "score")
    ds, cut = take(ds, shard, order_by="trace_id")
    reference = load(cfg.reference) if cfg.reference else None
    ref_digest = digest(reference, ("trace_id", "completion")) if reference is not None else ""
    if shard and reference is not None:   # drift reads only the same problem's references
        reference = shard.select(reference)
    scorers = scorers or Scorers.from_config(cfg)
    counts: Counter = Counter()
    scored = score(ds, scorers, reference, workdir=cfg.out, counts=counts,
                   desc=f"score {Path(cfg.data).name}")
    save(scored, cfg.out)
    if cut:
        cut.record(cfg.out, "score", {**keyed(cfg), "engine": roles_engine(cfg), "reference": ref_digest},
                   len(scored))
    stats = trace_stats(scored)
    return {"rows": stats["rows"], "problems": stats["problems"], "diagnostics": stats["diagnostics"],
            "reward_kind": cfg.reward, "counts": dict(counts)}
