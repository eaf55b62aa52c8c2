"""``evaluate``: greedy pass@1 of a model (optionally + a LoRA adapter) on held-out problems.

Saves per-problem outputs as a dataset (``out/data``, EVAL schema) and the accuracy as JSON
(``out/metrics.json``).

Example:
    >>> evaluate_command(EvaluateConfig(model="tiny-random", out="runs/x/eval/base",
    ...     problems=SourceConfig(source="svamp", limit=8)))                  # doctest: +SKIP
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset

from ..answers import grade
from ..config import ConfigError
from ..generation import Generator, Request, SamplingParams, make_generator
from ..prompts import load_prompt
from ..schema import EVAL
from ..sources import SourceConfig, load_problems
from ..io import save


@dataclass
class EvaluateConfig:
    model: str = field(default="tiny-random", metadata={"help": "preset, model dir or Hub id"})
    adapter: str = field(default="", metadata={"help": "PEFT adapter dir or Hub id ('' = base)"})
    problems: SourceConfig = field(default_factory=SourceConfig,
                                   metadata={"help": "held-out problems"})
    prompt: str = field(default="math_cot", metadata={"help": "prompt template (as in sampling)"})
    max_new_tokens: int = 256
    batch_size: int = 16
    dtype: str = field(default="auto", metadata={"help": "auto (bf16 where native) | float32 | bfloat16"})
    out: str = field(default="", metadata={"help": "output dir (per-problem dataset + metrics.json)"})


def evaluate(problems: Dataset, cfg: EvaluateConfig, generator: Generator) -> tuple[Dataset, dict]:
    """Greedy-decode every problem once; return per-problem rows and accuracy metrics."""
    template = load_prompt(cfg.prompt)
    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, do_sample=False, temperature=0.0)
    requests = [Request(generator.render_chat(template.messages(q)), params)
                for q in problems["question"]]
    rows = []
    for p, c in zip(problems, generator.generate(requests)):
        answer, status = grade(c.text, p["gold_answer"])
        rows.append({"problem_id": p["id"], "question": p["question"], "gold_answer": p["gold_answer"],
                     "completion": c.text, "answer": answer or "", "correct": status == "correct",
                     "verify_status": status, "completion_tokens": c.completion_tokens,
                     "finish_reason": c.finish_reason, "model_id": generator.model_id,
                     "adapter": cfg.adapter})
    ds = Dataset.from_list(rows, features=EVAL)
    n, correct = len(ds), sum(ds["correct"])
    src = cfg.problems
    metrics = {"model": generator.model_id, "adapter": cfg.adapter, "source": src.source,
               "split": src.split, "offset": src.offset, "dtype": getattr(generator, "dtype", ""),
               "total": n, "correct": correct,
               "accuracy": correct / n if n else 0.0,
               "unverifiable_gold": ds["verify_status"].count("unverifiable_gold"),
               "stopped": sum(f != "length" for f in ds["finish_reason"]),
               "mean_completion_tokens": sum(ds["completion_tokens"]) / n if n else 0.0}
    return ds, metrics


def evaluate_command(cfg: EvaluateConfig) -> dict:
    if not cfg.problems.source or not cfg.out:
        raise ConfigError("evaluate: 'source' and 'out' are required")
    problems = load_problems(cfg.problems)
    gen = make_generator(cfg.model, adapter=cfg.adapter or None, batch_size=cfg.batch_size,
                         dtype=cfg.dtype)
    ds, metrics = evaluate(problems, cfg, gen)
    save(ds, cfg.out)
    Path(cfg.out, "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
