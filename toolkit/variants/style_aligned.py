"""``style_aligned`` (Style-Aligned Refinement, SAR): keep the SLM's own trajectory and wording,
take only the Oracle's logical repair. Correct SLM traces pass through unchanged; incorrect ones
are repaired in one of two modes (recorded per row in ``mode``):

- ``prefix``: find the first faulty step (arithmetic ``a op b = c`` is checked deterministically
  first; otherwise the Oracle is asked which step is first wrong), let the Oracle rewrite that one
  step, then let the **SLM itself** continue from the repaired prefix (its own prompt and sampling
  params, several seeds) and keep a verified continuation. The repaired prefix is a prefix of the
  final completion.
- ``minimal_edit``: the Oracle corrects the trace with as few changes as possible; an edit whose
  normalised token edit distance exceeds ``edit_budget`` is rejected and counted.

Example:
    >>> first_wrong_arithmetic(["She has 3 + 4 = 7 apples.", "Then 7 * 2 = 15.", "So 15."])
    1
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

from datasets import Dataset, concatenate_datasets

from ..config import ConfigError
from ..generation import Request, SamplingParams
from ..prompts import load_prompt
from ..schema import TRACE
from ..stages.sample import trace_seed
from ..stages.verify import verify
from . import BuildContext, Variant, register
from .oracle import (ask, count_empty, derive, edit_stats, first_per_problem, model_oracle,
                     oracle_identity, sampling, settings, sharded, tokens)
from .rft import RftConfig, keep_correct

REPAIRABLE = ("wrong", "no_answer")
PROMPTS = {"prefix": ("sar_locate", "sar_fix_step"), "minimal_edit": ("sar_minimal_edit",)}
_NUM = r"(-?\d+(?:\.\d+)?)"
_ARITH = re.compile(_NUM + r"\s*([-+*/×x÷])\s*" + _NUM + r"\s*=\s*" + _NUM)


@dataclass
class StyleAlignedConfig:
    mode: Literal["prefix", "minimal_edit"] = field(default="minimal_edit", metadata={
        "help": "prefix (Oracle fixes the first wrong step, the SLM continues) | minimal_edit"})
    edit_budget: float = field(default=0.5, metadata={"help": "max normalised token edit distance "
                                                      "of a minimal edit (else rejected)"})
    continuations: int = field(default=4, metadata={"help": "SLM continuations per repaired prefix"})
    temperature: float = field(default=0.0, metadata={"help": "the Oracle's (0 = greedy)"})
    top_p: float = 0.95
    max_new_tokens: int = field(default=384, metadata={"help": "the Oracle's answer length"})
    seed: int = 0
    max_per_problem: int = 4
    near_dup_threshold: float = 0.9
    traces_per_problem: int | None = field(default=None, metadata={
        "help": "the Oracle repairs the first N wrong traces of each problem (null: every one)"})

    def __post_init__(self):
        if self.traces_per_problem is not None and self.traces_per_problem < 1:
            raise ConfigError(f"traces_per_problem must be >= 1 or null, got {self.traces_per_problem}")
        if not 0 < self.edit_budget <= 1:
            raise ConfigError(f"edit_budget must be in (0, 1], got {self.edit_budget}")
        if self.continuations < 1:
            raise ConfigError(f"continuations must be >= 1, got {self.continuations}")
        RftConfig(self.max_per_problem, self.near_dup_threshold)


# ------------------------------------------------------------------------------ steps
def step_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the steps of a solution: its non-empty lines, or its sentences when
    it is one line."""
    spans = [m.span() for m in re.finditer(r"[^\n]*\S[^\n]*", text)]
    if len(spans) <= 1:
        spans = [m.span() for m in re.finditer(r"\S.*?(?:[.!?](?=\s|$)|$)", text, re.S)]
    return spans


def first_wrong_arithmetic(steps: list[str]) -> int | None:
    """Index of the first step with an ``a op b = c`` whose arithmetic is wrong, else None."""
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
           "×": lambda a, b: a * b, "x": lambda a, b: a * b,
           "/": lambda a, b: a / b if b else None, "÷": lambda a, b: a / b if b else None}
    for i, step in enumerate(steps):
        for a, op, b, c in _ARITH.findall(step.replace(",", "")):
            value = ops[op](Fraction(a), Fraction(b))
            decimals = len(c.split(".")[1]) if "." in c else 0
            if value is not None and abs(value - Fraction(c)) > Fraction(1, 2 * 10 ** decimals):
                return i
    return None


def _number(text: str, n: int) -> int | None:
    m = re.search(r"\d+", text or "")
    return int(m.group()) - 1 if m and 1 <= int(m.group()) <= n else None


# ------------------------------------------------------------------------------ modes
def _prefix_rows(traces: list[dict], cfg: StyleAlignedConfig, ctx: BuildContext, oracle) -> list[dict]:
    locate, fix = load_prompt("sar_locate"), load_prompt("sar_fix_step")
    steps = []
    for t in traces:
        spans = step_spans(t["completion"])
        steps.append((spans, [t["completion"][a:b] for a, b in spans]))
    where = [first_wrong_arithmetic(texts) for _, texts in steps]
    ask_idx = [i for i, w in enumerate(where) if w is None and steps[i][1]]
    if ask_idx:  # no arithmetic slip found: the Oracle names the first wrong step
        prompts = [oracle.render_chat(locate.messages(traces[i]["question"], solution="\n".join(
            f"Step {j + 1}: {s}" for j, s in enumerate(steps[i][1])))) for i in ask_idx]
        for i, c in zip(ask_idx, ask(oracle, prompts, [sampling(cfg)] * len(prompts))):
            where[i] = _number(c.text, len(steps[i][1]))
    todo = [i for i, w in enumerate(where) if w is not None]
    ctx.counts["step_not_located"] += len(traces) - len(todo)
    prompts = [oracle.render_chat(fix.messages(
        traces[i]["question"], solution="\n".join(steps[i][1][:where[i]]) or "(none)",
        step=steps[i][1][where[i]])) for i in todo]
    fixes = ask(oracle, prompts, [sampling(cfg)] * len(todo))
    count_empty(ctx, [c.text for c in fixes], "oracle_empty")
    slm = ctx.role("slm")
    jobs = []  # (trace index, repaired prefix, fixed step, oracle prompt, continuation seed index)
    for i, prompt, c in zip(todo, prompts, fixes):
        fixed = next((ln.strip() for ln in c.text.splitlines() if ln.strip()), "")
        if fixed:
            start = steps[i][0][where[i]][0]
            sep = "\n" if "\n" in traces[i]["completion"] else " "
            prefix = traces[i]["completion"][:start] + fixed + sep
            jobs += [(i, prefix, fixed, prompt, j) for j in range(cfg.continuations)]
    params = []
    for i, _, _, _, j in jobs:  # the SLM's own sampling params, fresh seeds
        p = json.loads(traces[i]["params"])
        params.append(SamplingParams(**{**p, "seed": trace_seed(cfg.seed, traces[i]["trace_id"], j)}))
    outs = slm.generate([Request(traces[i]["prompt"] + prefix, sp) for (i, prefix, *_), sp in zip(jobs, params)])
    rows = []
    for (i, prefix, fixed, prompt, j), sp, c in zip(jobs, params, outs):
        t, text = traces[i], prefix + c.text
        distance, _ = edit_stats(lambda s: tokens(ctx, s), t["completion"], text)
        rows.append(derive(t, text, ctx, variant="style_aligned", mode="prefix", parent_id=t["trace_id"],
                           trace_id=f"{t['trace_id']}/sar{j}", sample_index=j, seed=sp.seed,
                           params=sp.to_json(), finish_reason=c.finish_reason, edit_distance=distance,
                           oracle_token_share=round(len(tokens(ctx, fixed)) / max(1, len(tokens(ctx, text))), 4),
                           oracle_prompt_id=fix.id, oracle_prompt=prompt, **oracle_identity(oracle)))
    return rows


def _minimal_edit_rows(traces: list[dict], cfg: StyleAlignedConfig, ctx: BuildContext, oracle) -> list[dict]:
    template = load_prompt("sar_minimal_edit")
    prompts = [oracle.render_chat(template.messages(t["question"], solution=t["completion"])) for t in traces]
    outs = ask(oracle, prompts, [sampling(cfg)] * len(traces))
    count_empty(ctx, [c.text for c in outs], "oracle_empty")
    rows = []
    for t, prompt, c in zip(traces, prompts, outs):
        if not c.text.strip():
            continue
        distance, share = edit_stats(lambda s: tokens(ctx, s), t["completion"], c.text.strip())
        if distance > cfg.edit_budget:
            ctx.counts["over_edit_budget"] += 1
            continue
        rows.append(derive(t, c.text.strip(), ctx, variant="style_aligned", mode="minimal_edit",
                           parent_id=t["trace_id"], trace_id=f"{t['trace_id']}/edit",
                           finish_reason=c.finish_reason, edit_distance=distance,
                           oracle_token_share=share, oracle_prompt_id=template.id,
                           oracle_prompt=prompt, **oracle_identity(oracle)))
    return rows


def build(parent: Dataset, cfg: StyleAlignedConfig | None, ctx: BuildContext) -> Dataset:
    cfg = cfg or StyleAlignedConfig()
    oracle = model_oracle(ctx, "style_aligned")
    if "" in set(parent["verify_status"]):
        parent = verify(parent)
    keep = parent.filter(lambda r: r["correct"]).map(lambda r: {
        "variant": "style_aligned", "mode": "passthrough", "parent_id": r["trace_id"],
        "edit_distance": 0.0, "oracle_token_share": 0.0}, features=TRACE)
    broken = first_per_problem(parent.filter(lambda r: r["verify_status"] in REPAIRABLE).to_list(),
                               cfg.traces_per_problem)
    repair = _prefix_rows if cfg.mode == "prefix" else _minimal_edit_rows
    models = (oracle, ctx.role("slm")) if cfg.mode == "prefix" and broken else (oracle,)
    key = settings(cfg, *models, prompts=[load_prompt(p) for p in PROMPTS[cfg.mode]])
    fixed = verify(sharded(broken, lambda ts: repair(ts, cfg, ctx, oracle), ctx, key, desc=f"sar {cfg.mode}"))
    ctx.counts["repair_wrong"] += sum(not ok for ok in fixed["correct"])
    return keep_correct(concatenate_datasets([keep, fixed]),
                        RftConfig(cfg.max_per_problem, cfg.near_dup_threshold), ctx.counts)


register(Variant("style_aligned", "self", "Style-Aligned Refinement: the SLM's own traces with only "
                 "the Oracle's logical repair (correct ones unchanged)", build, StyleAlignedConfig,
                 needs=("oracle", "slm"), version=2))
