"""``evaluate``: pass@1 of a model (optionally + a LoRA adapter) on held-out problems, greedy or
from ``n`` samples (then pass@k and maj@k too), with the protocol that produced it.

Saves per-sample outputs as a dataset (``out/data``, EVAL schema) and the scores with their
protocol (:mod:`toolkit.protocol`: prompt id and hash, shots, chat template, sampling, extraction,
engine, dtype, revisions) as JSON (``out/metrics.json``). Problems are decoded in chunks of ``batch_size`` (a chunk is one batch, so
a problem's output depends only on its chunk). With ``cache_dir``, each finished chunk is kept
under a fingerprint of the model, the adapter's weights and the settings: a killed evaluation
resumes, and a later one over a longer list of the same problems (a higher ``limit``) decodes
only the chunks it has not seen.

Example:
    >>> evaluate_command(EvaluateConfig(model="tiny-random", out="runs/x/eval/base",
    ...     problems=SourceConfig(source="svamp", limit=8)))                  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, concatenate_datasets
from tqdm.auto import tqdm

from ..answers import grade
from ..passk import check_k, scores
from .. import protocol as P
from ..config import ConfigError, volatile
from ..errors import QupError
from ..generation import Generator, Request, SamplingParams, engine_label
from ..generation.roles import RoleConfig
from ..prompts import load_prompt
from ..resume import unit
from ..schema import EVAL
from ..sources import SourceConfig, load_problems
from ..stats import wilson
from .sample import trace_seed
from ..io import empty, save


@dataclass
class EvaluateConfig:
    model: RoleConfig = field(default_factory=lambda: RoleConfig("tiny-random"), metadata={
        "help": "the model evaluated (flags --model, --backend, --dtype, --vllm-*, ...)"})
    adapter: str = field(default="", metadata={"help": "PEFT adapter dir or Hub id ('' = base)"})
    problems: SourceConfig = field(default_factory=SourceConfig,
                                   metadata={"help": "held-out problems"})
    # the protocol (toolkit.protocol): what besides the model decides the score
    prompt: str = field(default="math_cot", metadata={"help": "prompt template (as in sampling)"})
    shots: int = field(default=0, metadata={"help": "worked examples before each question: the first N "
                                            "problems of the benchmark's shots_split"})
    shots_split: str = field(default="train", metadata={"help": "split the shots come from"})
    chat_template: bool = field(default=True, metadata={
        "help": "render with the model's chat template (false: plain text, shots joined by blank lines)"})
    max_new_tokens: int = 256
    stop: list[str] = field(default_factory=list, metadata={"help": "stop strings (cut from the output)"})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy; > 0 samples n per problem"})
    top_p: float = 1.0
    n: int = field(default=1, metadata={"help": "samples per problem (1 when greedy)"})
    k: list[int] = field(default_factory=lambda: [1], metadata={
        "help": "pass@k (and maj@k for k > 1) from the n samples"})
    seed: int = field(default=0, metadata={"help": "base seed of the samples"})
    batch_size: int = volatile(16, "problems per chunk (one batch; in the chunk cache's fingerprint)")
    out: str = volatile("", "output dir (per-problem dataset + metrics.json)")
    cache_dir: str = volatile("", "keep finished chunks here, reused by any evaluation with the same "
                                  "model, adapter and settings")

    # the model's flat keys before it was one role
    __moved__ = {"dtype": "model.dtype", "backend": "model.backend", "vllm": "model.vllm"}

    def __post_init__(self):
        if isinstance(self.model, str):
            self.model = RoleConfig(self.model)
        if not self.model.enabled or self.model.backend == "reference":
            raise ConfigError(f"evaluate: model must be a model, got {self.model.model!r}")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ConfigError("evaluate: batch_size and max_new_tokens must be >= 1")
        if self.shots < 0 or not 0 < self.top_p <= 1 or not self.temperature >= 0:
            raise ConfigError(f"evaluate: shots must be >= 0 (got {self.shots}), top_p in (0, 1] (got "
                              f"{self.top_p}), temperature >= 0 (got {self.temperature})")
        if self.temperature == 0 and self.n != 1:
            raise ConfigError(f"evaluate: greedy decoding (temperature 0) gives one text per problem: "
                              f"n must be 1, got {self.n}; set temperature > 0 to sample")
        for k in self.k or [1]:
            check_k(self.n, k)
        self.k = sorted(set(self.k or [1]))


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
    h.update(json.dumps(["eval-rows-v2", cfg.shots, cfg.shots_split, cfg.chat_template, cfg.stop,
                         cfg.temperature, cfg.top_p, cfg.n, cfg.seed]).encode())
    return h.hexdigest()[:24]


def load_shots(cfg: EvaluateConfig) -> Dataset | None:
    """The first ``cfg.shots`` problems of the benchmark's ``shots_split`` (lm-eval's ``first_n``)."""
    if not cfg.shots:
        return None
    src = dataclasses.replace(cfg.problems, split=cfg.shots_split, offset=0, limit=cfg.shots)
    try:
        shots = load_problems(src)
    except QupError as e:
        raise ConfigError(f"evaluate: shots: {e}") from None
    if len(shots) < cfg.shots or not all(shots["gold_solution"]):
        raise ConfigError(f"evaluate: shots: {src.source} split {cfg.shots_split!r} has {len(shots)} problems "
                          f"with worked solutions, {cfg.shots} asked")
    return shots


def render_prompt(template, question: str, shots, chat: bool, generator: Generator) -> str:
    """The prompt for ``question``: shots as earlier chat turns, or plain ``Q A\\n\\nQ A\\n\\nQ``.

    >>> from toolkit.prompts import load_prompt
    >>> render_prompt(load_prompt("question_answer"), "1+1?", [{"question": "2+2?", "gold_solution": "#### 4"}],
    ...               False, None)
    'Question: 2+2?\\nAnswer: #### 4\\n\\nQuestion: 1+1?\\nAnswer:'
    """
    shots = list(shots or [])
    if chat:
        turns = [m for s in shots for m in (*template.messages(s["question"]),
                                            {"role": "assistant", "content": s["gold_solution"]})]
        return generator.render_chat(turns + template.messages(question))
    text = lambda q: template.messages(q)[0]["content"]            # noqa: E731
    return "\n\n".join([f"{text(s['question'])} {s['gold_solution']}" for s in shots] + [text(question)])


def _cut(text: str, stop: list[str]) -> str:
    """The completion before its first stop string (what OpenAI servers and lm-eval return)."""
    cuts = [text.find(s) for s in stop if s and s in text]
    return text[:min(cuts)] if cuts else text


def record(cfg: EvaluateConfig, generator: Generator, template) -> dict:
    """The protocol of this evaluation (:mod:`toolkit.protocol`), its id included."""
    rec = {"prompt_id": template.id, "prompt_sha256": hashlib.sha256(template.text.encode()).hexdigest(),
           "shots": cfg.shots,
           "shots_from": f"{cfg.problems.source}:{cfg.shots_split}[:{cfg.shots}]" if cfg.shots else "",
           "chat_template": cfg.chat_template, "sampling": P.sampling(cfg.temperature, cfg.top_p, cfg.n, cfg.seed),
           "max_new_tokens": cfg.max_new_tokens, "stop": list(cfg.stop), "extraction": P.extraction(),
           "engine": engine_label(generator), "dtype": str(getattr(generator, "dtype", "")),
           "model": generator.model_id, "model_revision": getattr(generator, "model_revision", "") or "",
           "adapter": cfg.adapter, "adapter_revision": P.adapter_revision(cfg.adapter)}
    rec["protocol_id"] = P.protocol_id(rec)
    return rec


def _decode(chunk: Dataset, cfg: EvaluateConfig, generator: Generator, template, shots) -> list[dict]:
    """EVAL rows of a chunk of problems: ``n`` samples each (one greedy text when n = 1)."""
    requests, owners = [], []
    for p in chunk:
        prompt = render_prompt(template, p["question"], shots, cfg.chat_template, generator)
        for i in range(cfg.n):
            seed = trace_seed(cfg.seed, p["id"], i) if cfg.temperature > 0 else None
            params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                    top_p=cfg.top_p, do_sample=cfg.temperature > 0, stop=list(cfg.stop),
                                    seed=seed)
            requests.append(Request(prompt, params))
            owners.append((p, i))
    rows = []
    for (p, i), c in zip(owners, generator.generate(requests, progress=False)):
        text = _cut(c.text, cfg.stop)
        answer, status = grade(text, p["gold_answer"])
        rows.append({"problem_id": p["id"], "sample_index": i, "question": p["question"],
                     "gold_answer": p["gold_answer"], "completion": text, "answer": answer or "",
                     "correct": status == "correct", "verify_status": status,
                     "completion_tokens": c.completion_tokens, "finish_reason": c.finish_reason,
                     "model_id": generator.model_id, "adapter": cfg.adapter})
    return rows


def evaluate(problems: Dataset, cfg: EvaluateConfig, generator: Generator) -> tuple[Dataset, dict]:
    """Decode every problem (``n`` times when sampling), chunk by chunk; return per-sample rows
    and metrics (scores with intervals and the protocol)."""
    template = load_prompt(cfg.prompt)
    shots = load_shots(cfg)
    fingerprint = _fingerprint(cfg, generator, template.id)
    cache = Path(cfg.cache_dir) / fingerprint if cfg.cache_dir else None
    parts, correct = [], 0
    bar = tqdm(total=len(problems), desc="evaluate", unit="problem")
    for start in range(0, len(problems), cfg.batch_size):
        chunk = problems.select(range(start, min(start + cfg.batch_size, len(problems))))
        ids = hashlib.sha256(json.dumps(list(chunk["id"])).encode()).hexdigest()[:16]
        path = cache / f"chunk-{start // cfg.batch_size:05d}-{ids}.parquet" if cache else None
        rows = unit(path, {"fingerprint": fingerprint}, chunk,   # keyed by its problems' rows too
                    lambda: _decode(chunk, cfg, generator, template, shots), EVAL, "evaluate chunk")
        parts.append(Dataset.from_list(rows, features=EVAL))
        correct += sum(parts[-1]["correct"])
        bar.update(len(chunk))
        bar.set_postfix(correct=correct)
    bar.close()
    ds = concatenate_datasets(parts) if parts else empty(EVAL)
    return ds, _metrics(ds, cfg, record(cfg, generator, template))


def _metrics(ds: Dataset, cfg: EvaluateConfig, protocol: dict) -> dict:
    """Counts, the headline pass@1 (greedy: Wilson interval; sampled: the mean over samples with
    a bootstrap interval), pass@k/maj@k when sampled, and the protocol."""
    n, correct = len(ds), sum(ds["correct"])
    by: dict[str, list[int]] = {}
    for j, pid in enumerate(ds["problem_id"]):
        by.setdefault(pid, []).append(j)
    flags, answers = ds["correct"], ds["answer"]
    if cfg.n == 1:
        lo, hi = wilson(correct, n) if n else (0.0, 0.0)
        found = {"pass@1": {"value": correct / n if n else 0.0, "ci_low": lo, "ci_high": hi, "problems": n,
                            "n": 1, "estimator": "greedy", "interval": "95% Wilson"}}
    else:
        found = scores([[flags[j] for j in js] for js in by.values()],
                       [[answers[j] for j in js] for js in by.values()], cfg.k) if by else {}
    head = found.get("pass@1") or {"value": correct / n if n else 0.0, "ci_low": None, "ci_high": None}
    src = cfg.problems
    return {"model": protocol["model"], "adapter": cfg.adapter, "source": src.source,
            "split": src.split, "offset": src.offset, "dtype": protocol["dtype"], "engine": protocol["engine"],
            "total": n, "correct": correct, "problems": len(by), "samples_per_problem": cfg.n,
            "accuracy": head["value"], "ci_low": head["ci_low"], "ci_high": head["ci_high"],
            "metric": P.metric_label(protocol), "scores": found,
            "unverifiable_gold": ds["verify_status"].count("unverifiable_gold"),
            "stopped": sum(f != "length" for f in ds["finish_reason"]),
            "mean_completion_tokens": sum(ds["completion_tokens"]) / n if n else 0.0,
            "protocol_id": protocol["protocol_id"], "protocol": protocol}


def evaluate_command(cfg: EvaluateConfig) -> dict:
    if not cfg.problems.source or not cfg.out:
        raise ConfigError("evaluate: 'source' and 'out' are required")
    problems = load_problems(cfg.problems)
    gen = cfg.model.generator(cfg.adapter or None)
    ds, metrics = evaluate(problems, cfg, gen)
    save(ds, cfg.out)
    Path(cfg.out, "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
