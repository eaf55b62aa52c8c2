"""``evaluate``: greedy pass@1 of a model (optionally + a LoRA adapter) on held-out problems.

Saves per-problem outputs as a dataset (``out/data``, EVAL schema) and the accuracy as JSON
(``out/metrics.json``). Problems are decoded in chunks of ``batch_size`` (a chunk is one batch, so
a problem's output depends only on its chunk). With ``cache_dir``, each finished chunk is kept
under a fingerprint of the model, the adapter's weights and the settings: a killed evaluation
resumes, and a later one over a longer list of the same problems (a higher ``limit``) decodes
only the chunks it has not seen.

Example:
    >>> evaluate_command(EvaluateConfig(model="tiny-random", out="runs/x/eval/base",
    ...     problems=SourceConfig(source="svamp", limit=8)))                  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, concatenate_datasets
from tqdm.auto import tqdm

from ..answers import grade
from ..config import ConfigError
from ..generation import Generator, Request, SamplingParams, engine_label, make_generator
from ..generation.roles import VLLMOptions, check_backend
from ..prompts import load_prompt
from ..schema import EVAL
from ..sources import SourceConfig, load_problems
from ..io import empty, save


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
    backend: str = field(default="auto", metadata={"help": "auto (vLLM where it runs) | vllm | transformers"})
    vllm: VLLMOptions = field(default_factory=VLLMOptions, metadata={"help": "vLLM engine options"})
    out: str = field(default="", metadata={"help": "output dir (per-problem dataset + metrics.json)"})
    cache_dir: str = field(default="", metadata={"help": "keep finished chunks here, reused by any "
                                                 "evaluation with the same model, adapter and settings"})

    def __post_init__(self):
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ConfigError("evaluate: batch_size and max_new_tokens must be >= 1")
        self.backend = check_backend(self.backend, self.vllm, "evaluate")
        if self.backend == "endpoint":
            raise ConfigError("evaluate: backend must be auto, vllm or transformers (in-process)")


def _fingerprint(cfg: EvaluateConfig, generator: Generator, prompt_id: str) -> str:
    """What decides a chunk's outputs besides its problems: model, adapter weights, settings."""
    h = hashlib.sha256(cfg.adapter.encode())       # the rows name it; a retrained one has new weights
    adapter = Path(cfg.adapter) if cfg.adapter else None
    if adapter and adapter.is_dir():
        for f in sorted(adapter.glob("adapter_*")):   # adapter_config.json, adapter_model.safetensors
            h.update(f.name.encode() + f.read_bytes())
    h.update(json.dumps([generator.model_id, getattr(generator, "model_revision", ""), prompt_id,
                         cfg.max_new_tokens, cfg.batch_size, getattr(generator, "dtype", ""),
                         getattr(generator, "merged", False), engine_label(generator)]).encode())
    return h.hexdigest()[:24]


def evaluate(problems: Dataset, cfg: EvaluateConfig, generator: Generator) -> tuple[Dataset, dict]:
    """Greedy-decode every problem once, chunk by chunk; return per-problem rows and metrics."""
    template = load_prompt(cfg.prompt)
    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, do_sample=False, temperature=0.0)
    cache = Path(cfg.cache_dir) / _fingerprint(cfg, generator, template.id) if cfg.cache_dir else None
    parts, correct = [], 0
    bar = tqdm(total=len(problems), desc="evaluate", unit="problem")
    for start in range(0, len(problems), cfg.batch_size):
        chunk = problems.select(range(start, min(start + cfg.batch_size, len(problems))))
        ids = hashlib.sha256(json.dumps(list(chunk["id"])).encode()).hexdigest()[:16]
        path = cache / f"chunk-{start // cfg.batch_size:05d}-{ids}.parquet" if cache else None
        if path and path.exists():
            parts.append(Dataset.from_parquet(str(path), features=EVAL))
            correct += sum(parts[-1]["correct"])
            bar.update(len(chunk))
            continue
        requests = [Request(generator.render_chat(template.messages(q)), params) for q in chunk["question"]]
        rows = []
        for p, c in zip(chunk, generator.generate(requests, progress=False)):
            answer, status = grade(c.text, p["gold_answer"])
            rows.append({"problem_id": p["id"], "question": p["question"], "gold_answer": p["gold_answer"],
                         "completion": c.text, "answer": answer or "", "correct": status == "correct",
                         "verify_status": status, "completion_tokens": c.completion_tokens,
                         "finish_reason": c.finish_reason, "model_id": generator.model_id,
                         "adapter": cfg.adapter})
        parts.append(Dataset.from_list(rows, features=EVAL))
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            parts[-1].to_parquet(str(path.with_suffix(".tmp")))
            path.with_suffix(".tmp").replace(path)   # atomic: a killed run never leaves half a chunk
        correct += sum(r["correct"] for r in rows)
        bar.update(len(chunk))
        bar.set_postfix(correct=correct)
    bar.close()
    ds = concatenate_datasets(parts) if parts else empty(EVAL)
    n = len(ds)
    src = cfg.problems
    metrics = {"model": generator.model_id, "adapter": cfg.adapter, "source": src.source,
               "split": src.split, "offset": src.offset, "dtype": getattr(generator, "dtype", ""),
               "engine": engine_label(generator),
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
    gen = make_generator(cfg.model, backend=cfg.backend, adapter=cfg.adapter or None,
                         batch_size=cfg.batch_size, dtype=cfg.dtype, vllm=cfg.vllm)
    ds, metrics = evaluate(problems, cfg, gen)
    save(ds, cfg.out)
    Path(cfg.out, "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
