"""The local in-process engine: batched, seeded sampling with transformers + a KV cache.

Each row has its own ``torch.Generator`` seeded from its request, so the same seed gives the same
text whatever else shares the batch. Prompts are left-padded with proper attention masks and
position ids; finished rows leave the batch (the KV cache is compacted) so long tails stay cheap,
and new rows can join a running batch (:mod:`toolkit.generation.running`, used by the server).

Example:
    >>> engine = LocalEngine("tiny-random", batch_size=8)                   # doctest: +SKIP
    >>> prompt = engine.render_chat([{"role": "user", "content": "What is 2+3?"}])  # doctest: +SKIP
    >>> [c] = engine.generate([Request(prompt, SamplingParams(max_new_tokens=16, seed=0))])  # doctest: +SKIP
    >>> [lps] = engine.score([prompt], [c.text])      # one logprob per completion token  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from .base import token_ranks
from ..models import dtype_name, load_model, model_info
from .base import Completion, Request, SamplingParams, split_for_scoring
from .running import RunningBatch, _Row, run_to_end

StepCallback = Callable[[int, int, str, float], None]  # (request index, token id, token text, logprob)


class LocalEngine:
    """A :class:`~toolkit.generation.base.Generator` over a transformers model (+ LoRA adapters).

    ``adapters`` maps names to PEFT adapter dirs (or Hub ids); a request picks one by
    ``Request.adapter``; requests without one use ``default_adapter`` (``None``: the base model).
    A single adapter that is also the default serves every request, so it is merged into the
    weights (``merged``): the same model, 1.2–1.3× faster to decode on CPU
    (``benchmarks/merged_adapter.py``).
    ``dtype``: ``auto`` (see :func:`toolkit.models.resolve_dtype`), a name or a ``torch.dtype``.
    """

    def __init__(self, model: str, adapters: dict[str, str] | None = None,
                 default_adapter: str | None = None, batch_size: int = 16, dtype="auto"):
        info = model_info(model)
        self.model_id, self.model_revision = info.hub_id, info.revision
        self.model, self.tokenizer = load_model(model, dtype=dtype)
        self.dtype = dtype_name(self.model.dtype)
        self.adapters = dict(adapters or {})
        if self.adapters:
            from peft import PeftModel
            names = list(self.adapters)
            self.model = PeftModel.from_pretrained(self.model, self.adapters[names[0]],
                                                   adapter_name=names[0])
            for name in names[1:]:
                self.model.load_adapter(self.adapters[name], adapter_name=name)
            self.model.eval()
        if default_adapter is not None and default_adapter not in self.adapters:
            raise ValueError(f"default_adapter {default_adapter!r} is not among {list(self.adapters)}")
        self.default_adapter = default_adapter
        self.merged = len(self.adapters) == 1 and default_adapter is not None
        if self.merged:
            self.model = self.model.merge_and_unload()
        self.batch_size = batch_size
        self.device = next(self.model.parameters()).device
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        self.eos_ids.discard(None)
        self.max_length = getattr(self.model.config, "max_position_embeddings", 2048)

    engine = "transformers"

    @property
    def label(self) -> str:
        import transformers
        return f"transformers {transformers.__version__}"

    # ------------------------------------------------------------------ Generator protocol
    def render_chat(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, requests: Sequence[Request], progress: bool = True) -> list[Completion]:
        """Completions in request order; requests are grouped by adapter and length-sorted.

        A row's floats depend on its batch's shape (rows, padding), which can flip a near-tie
        draw: ``sample`` keeps texts reproducible across shards by always decoding the same
        chunk of problems in one call."""
        out: list[Completion | None] = [None] * len(requests)
        order = sorted(range(len(requests)), key=lambda i: self._batch_key(requests[i], i))
        bar = tqdm(total=len(requests), desc="generate", unit="seq", disable=not progress)
        start, tokens = time.perf_counter(), 0
        i = 0
        while i < len(order):
            adapter = self._adapter_of(requests[order[i]])
            batch = [order[i]]
            while (len(batch) < self.batch_size and i + len(batch) < len(order)
                   and self._adapter_of(requests[order[i + len(batch)]]) == adapter):
                batch.append(order[i + len(batch)])
            for j, c in zip(batch, self.generate_batch([requests[j] for j in batch])):
                out[j] = c
                tokens += c.completion_tokens
            i += len(batch)
            bar.update(len(batch))
            bar.set_postfix(tok_s=f"{tokens / (time.perf_counter() - start):.1f}")
        bar.close()
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------ one batch
    def _batch_key(self, req: Request, i: int) -> tuple:
        return str(self._adapter_of(req)), -len(req.prompt), i

    def _adapter_of(self, req: Request) -> str | None:
        return self._adapter_name(req.adapter)

    def _adapter_name(self, name: str | None) -> str | None:
        name = name if name is not None else self.default_adapter
        if name is not None and name not in self.adapters:
            raise ValueError(f"unknown adapter {name!r}; loaded: {list(self.adapters)}")
        return name

    def _adapter_context(self, name: str | None):
        if not self.adapters or self.merged:
            return contextlib.nullcontext()
        if name is None:
            return self.model.disable_adapter()
        self.model.set_adapter(name)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def generate_batch(self, requests: Sequence[Request], on_token: StepCallback | None = None,
                       on_error: Callable[[int, Exception], None] | None = None,
                       cancelled: Callable[[int], bool] | None = None) -> list[Completion]:
        """Decode one batch (all requests must use the same adapter).

        ``on_error(i, exc)``: a row that fails on its own (prompt, seed, sampling, ``on_token``)
        leaves the batch, is reported there and gets ``finish_reason="error"``; the other rows
        go on. Without it the first such error is raised. ``cancelled(i)`` is asked every step:
        a cancelled row leaves the batch (``finish_reason="cancelled"``).
        """
        batch = self.start_batch(self._adapter_of(requests[0]), on_token=on_token,
                                 on_error=on_error, cancelled=cancelled)
        return run_to_end(batch, requests)

    def start_batch(self, adapter: str | None, **callbacks) -> RunningBatch:
        """An empty :class:`~toolkit.generation.running.RunningBatch` that rows can join at any
        step (continuous batching); ``callbacks`` as documented there. Call its methods under
        ``torch.inference_mode()``."""
        return RunningBatch(self, self._adapter_name(adapter), **callbacks)

    def _pick(self, logits: torch.Tensor, p: SamplingParams, g: torch.Generator) -> int:
        if p.greedy:
            return int(logits.argmax())
        if p.temperature < 1e-6:  # a tiny temperature would overflow the scaled logits to inf
            logits = logits - logits.max()
        logits = logits / p.temperature
        if p.top_k > 0:
            kth = torch.topk(logits, min(p.top_k, logits.shape[-1])).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if p.top_p < 1.0:
            # The nucleus almost always lies in the top 1024 tokens: a top-k is far cheaper than
            # sorting the whole vocabulary; fall back to the full sort when it does not.
            top_p, top_i = torch.topk(probs, min(1024, probs.numel()))
            if top_p.sum() < p.top_p:
                top_p, top_i = torch.sort(probs, descending=True)
            top_p = top_p.masked_fill(top_p.cumsum(-1) - top_p > p.top_p, 0)
            return int(top_i[torch.multinomial(top_p.cpu(), 1, generator=g)])
        return int(torch.multinomial(probs.cpu(), 1, generator=g))

    def _check_finish(self, row: _Row, tok: int) -> None:
        if tok in self.eos_ids:
            row.ids.pop(), row.logprobs.pop()
            row.finish = "eos_token"
            return
        if row.params.stop:
            row.text = self.tokenizer.decode(row.ids, skip_special_tokens=True)
            tail = row.text[-(max(map(len, row.params.stop)) + 16):]
            if any(s in tail for s in row.params.stop):
                row.finish = "stop"
                return
        if len(row.ids) >= row.params.max_new_tokens or row.prompt_len + len(row.ids) >= self.max_length:
            row.finish = "length"

    def _completion(self, row: _Row) -> Completion:
        text = self.tokenizer.decode(row.ids, skip_special_tokens=True)
        if row.finish == "stop":  # cut at the first stop string, keeping it (TGI keeps it too)
            cut = min((text.find(s) + len(s) for s in row.params.stop if s in text), default=len(text))
            text = text[:cut]
        return Completion(text=text, prompt_tokens=row.prompt_len, completion_tokens=len(row.ids),
                          finish_reason=row.finish or "length", token_ids=row.ids,
                          token_logprobs=row.logprobs)

    # ------------------------------------------------------------------ scoring
    def score(self, prompts: Sequence[str], completions: Sequence[str], adapter: str | None = None,
              progress: bool = False) -> list[list[float]]:
        """Log-probability of each completion token given the prompt (see ``Generator.score``).

        ``adapter`` as in :meth:`generate` (``None``: ``default_adapter``).
        """
        pairs = split_for_scoring(self.encode, prompts, completions)
        return self.score_ids([ids for ids, _ in pairs], [n for _, n in pairs], adapter, progress)

    def score_ranked(self, prompts: Sequence[str], completions: Sequence[str], adapter: str | None = None,
                     progress: bool = False) -> list[tuple[list[float], list[int]]]:
        """:meth:`score` with each token's 1-based rank under the model, from the same forward
        pass (:func:`toolkit.generation.base.token_ranks`)."""
        pairs = split_for_scoring(self.encode, prompts, completions)
        return self.score_ids([ids for ids, _ in pairs], [n for _, n in pairs], adapter, progress,
                              ranks=True)

    @torch.inference_mode()
    def next_token_logprobs(self, prompts: Sequence[str], token_ids: Sequence[int],
                            adapter: str | None = None) -> list[list[float]]:
        """Per prompt, the log-probability of each of ``token_ids`` as the next token (one
        left-padded forward pass per batch; used by judges reading P("Yes"))."""
        out: list[list[float]] = []
        idx = torch.tensor(list(token_ids), device=self.device)
        with self._adapter_context(self._adapter_name(adapter)):
            for k in range(0, len(prompts), self.batch_size):
                enc = [self.encode(p) for p in prompts[k:k + self.batch_size]]
                width, pad = max(map(len, enc)), self.tokenizer.pad_token_id
                ids = torch.tensor([[pad] * (width - len(e)) + e for e in enc], device=self.device)
                mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in enc], device=self.device)
                logits = self.model(input_ids=ids, attention_mask=mask, logits_to_keep=1,
                                    position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits[:, -1]
                out.extend(torch.log_softmax(logits.float(), -1)[:, idx].tolist())
        return out

    @torch.inference_mode()
    def score_ids(self, sequences: Sequence[list[int]], starts: Sequence[int],
                  adapter: str | None = None, progress: bool = False, ranks: bool = False) -> list:
        """Log-probabilities of ``ids[start:]`` given what precedes them, per sequence (start >= 1);
        ``ranks``: per sequence ``(logprobs, 1-based token ranks)`` instead.

        ``batch_size`` sequences (length-sorted, right-padded) share a forward pass; logits are
        computed only at the scored positions.
        """
        if len(starts) != len(sequences) or any(n < 1 for n in starts):
            raise ValueError("score_ids needs one start >= 1 per sequence")
        name = self._adapter_name(adapter)
        out: list = [([], []) if ranks else [] for _ in sequences]
        order = sorted((i for i, ids in enumerate(sequences) if len(ids) > starts[i]),
                       key=lambda i: -len(sequences[i]))
        bar = tqdm(total=len(sequences), desc="score", unit="seq", disable=not progress)
        bar.update(len(sequences) - len(order))
        begin, tokens = time.perf_counter(), 0
        with self._adapter_context(name):
            for k in range(0, len(order), self.batch_size):
                batch = order[k:k + self.batch_size]
                for i, lp in zip(batch, self._score_batch([sequences[i] for i in batch],
                                                          [starts[i] for i in batch])):
                    out[i] = lp if ranks else lp[0]
                tokens += sum(len(sequences[i]) for i in batch)
                bar.update(len(batch))
                bar.set_postfix(tok_s=f"{tokens / (time.perf_counter() - begin):.1f}")
        bar.close()
        return out

    def _score_batch(self, seqs: list[list[int]], starts: list[int]) -> list[tuple[list[float], list[int]]]:
        width, pad = max(map(len, seqs)), self.tokenizer.pad_token_id
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=self.device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=self.device)
        keep = torch.zeros_like(mask, dtype=torch.bool)   # positions predicting the scored tokens
        for b, (s, n) in enumerate(zip(seqs, starts)):
            keep[b, n - 1:len(s) - 1] = True
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        hidden = base.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = base.get_output_embeddings()(hidden[keep])  # lm_head only where scored
        targets = ids[:, 1:][keep[:, :-1]]                  # logits are (scored tokens, vocab)
        sizes = [len(s) - n for s, n in zip(seqs, starts)]
        return [(torch.log_softmax(lg.float(), -1).gather(1, tg[:, None])[:, 0].tolist(),
                 token_ranks(lg.float(), tg).tolist())
                for lg, tg in zip(logits.split(sizes), targets.split(sizes))]
