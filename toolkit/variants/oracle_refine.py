"""``oracle_refine``: the Oracle rewrites each SLM trace (correct and incorrect) into its own best
solution of that problem; verified; kept if correct (de-duplicated, capped per problem). The
training text keeps the Oracle's wording: that is the drift the paper studies.

Example:
    >>> from toolkit.variants import get
    >>> get("oracle_refine").parent
    'self'
"""
from __future__ import annotations

from dataclasses import dataclass, field

from datasets import Dataset

from ..config import ConfigError
from ..prompts import load_prompt
from ..stages.verify import verify
from . import BuildContext, Variant, register
from .oracle import (ask, count_empty, derive, edit_stats, first_per_problem, model_oracle,
                     oracle_identity, sampling, settings, sharded, tokens)
from .rft import RftConfig, keep_correct


@dataclass
class OracleRefineConfig:
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy"})
    top_p: float = 0.95
    max_new_tokens: int = 384
    prompt: str = field(default="oracle_refine", metadata={"help": "the Oracle's template"})
    max_per_problem: int = 4
    near_dup_threshold: float = 0.9
    traces_per_problem: int | None = field(default=None, metadata={
        "help": "the Oracle rewrites the first N traces of each problem (null: every trace)"})

    def __post_init__(self):
        RftConfig(self.max_per_problem, self.near_dup_threshold)
        if self.traces_per_problem is not None and self.traces_per_problem < 1:
            raise ConfigError(f"traces_per_problem must be >= 1 or null, got {self.traces_per_problem}")


def build(parent: Dataset, cfg: OracleRefineConfig | None, ctx: BuildContext) -> Dataset:
    cfg = cfg or OracleRefineConfig()
    oracle = model_oracle(ctx, "oracle_refine")
    template = load_prompt(cfg.prompt)

    def refine(traces: list[dict]) -> list[dict]:
        prompts = [oracle.render_chat(template.messages(t["question"], solution=t["completion"]))
                   for t in traces]
        params = [sampling(cfg, t["seed"]) for t in traces]
        outs = ask(oracle, prompts, params)
        count_empty(ctx, [c.text for c in outs], "oracle_empty")
        rows = []
        for t, prompt, sp, c in zip(traces, prompts, params, outs):
            if not c.text.strip():
                continue
            distance, _ = edit_stats(lambda s: tokens(ctx, s), t["completion"], c.text)
            rows.append(derive(t, c.text, ctx, variant="oracle_refine", mode="refine",
                               parent_id=t["trace_id"], trace_id=f"{t['trace_id']}/refine",
                               model_id=oracle.model_id, model_revision=oracle.model_revision,
                               params=sp.to_json(), finish_reason=c.finish_reason,
                               edit_distance=distance, oracle_token_share=1.0,
                               oracle_prompt_id=template.id, oracle_prompt=prompt,
                               **oracle_identity(oracle)))
        return rows

    traces = first_per_problem(parent.to_list(), cfg.traces_per_problem)
    rows = verify(sharded(traces, refine, ctx, settings(cfg, oracle, prompts=[template]), desc="oracle_refine"))
    ctx.counts["oracle_wrong"] += sum(not ok for ok in rows["correct"])
    return keep_correct(rows, RftConfig(cfg.max_per_problem, cfg.near_dup_threshold), ctx.counts)


register(Variant("oracle_refine", "self", "SLM traces rewritten by the Oracle into its own solution, "
                 "verified", build, OracleRefineConfig, needs=("oracle",), version=2))
