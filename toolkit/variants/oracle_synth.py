"""``oracle_synth``: the Oracle solves each training problem from scratch (k samples), verified and
kept like ``rft`` (correct only, de-duplicated, capped per problem). With the ``reference`` Oracle
the dataset's own worked solutions are the Oracle text.

Example:
    >>> from toolkit.variants import get
    >>> get("oracle_synth").needs
    ('oracle',)
"""
from __future__ import annotations

from dataclasses import dataclass, field

from datasets import Dataset

from ..config import ConfigError
from ..generation.roles import ReferenceOracle
from ..prompts import load_prompt
from ..stages.sample import trace_seed
from ..stages.verify import verify
from . import BuildContext, Variant, register
from .oracle import ask, count_empty, derive, oracle_identity, problems_of, sampling, settings, sharded
from .rft import RftConfig, keep_correct


@dataclass
class OracleSynthConfig:
    k: int = field(default=1, metadata={"help": "Oracle solutions per problem"})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy (then k=1 suffices)"})
    top_p: float = 0.95
    max_new_tokens: int = 384
    seed: int = 0
    prompt: str = field(default="math_cot", metadata={"help": "the Oracle's template (solve the problem)"})
    max_per_problem: int = 4
    near_dup_threshold: float = 0.9

    def __post_init__(self):
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")
        RftConfig(self.max_per_problem, self.near_dup_threshold)  # same checks as rft


def build(parent: Dataset, cfg: OracleSynthConfig | None, ctx: BuildContext) -> Dataset:
    cfg = cfg or OracleSynthConfig()
    oracle = ctx.role("oracle")
    template = load_prompt(cfg.prompt)

    def solve(problems: list[dict]) -> list[dict]:
        if isinstance(oracle, ReferenceOracle):
            texts = [oracle.solution(p) for p in problems]
            count_empty(ctx, texts, "no_reference_solution")
            return [derive(p, t, ctx, variant="oracle_synth", mode="reference", parent_id="",
                           trace_id=f"{p['problem_id']}#ref", sample_index=0, model_id="reference",
                           model_revision="", params="", **oracle_identity(oracle))
                    for p, t in zip(problems, texts) if t]
        jobs = [(p, i) for p in problems for i in range(cfg.k)]
        prompts = {p["problem_id"]: oracle.render_chat(template.messages(p["question"])) for p in problems}
        params = [sampling(cfg, trace_seed(cfg.seed, p["problem_id"], i)) for p, i in jobs]
        outs = ask(oracle, [prompts[p["problem_id"]] for p, _ in jobs], params)
        count_empty(ctx, [c.text for c in outs], "oracle_empty")
        return [derive(p, c.text, ctx, variant="oracle_synth", mode="synth", parent_id="",
                       trace_id=f"{p['problem_id']}#oracle{i}", sample_index=i, seed=sp.seed,
                       model_id=oracle.model_id, model_revision=oracle.model_revision,
                       params=sp.to_json(), finish_reason=c.finish_reason, oracle_token_share=1.0,
                       oracle_prompt_id=template.id, oracle_prompt=prompts[p["problem_id"]],
                       **oracle_identity(oracle))
                for (p, i), sp, c in zip(jobs, params, outs) if c.text.strip()]

    rows = verify(sharded(problems_of(parent), solve, ctx, settings(cfg, oracle, prompts=[template]),
                          desc="oracle_synth"))
    ctx.counts["oracle_wrong"] += sum(not ok for ok in rows["correct"])
    return keep_correct(rows, RftConfig(cfg.max_per_problem, cfg.near_dup_threshold), ctx.counts)


register(Variant("oracle_synth", "self", "traces the Oracle wrote from scratch for each problem, "
                 "verified and de-duplicated", build, OracleSynthConfig, needs=("oracle",), version=2))
