"""A running batch of the local engine: rows decode together, join at any step, leave when done.

Rows share one left-padded KV cache. A row that joins a running batch is prefilled apart, then
its cache is left-padded into the running one (continuous batching, as TGI does); a row leaves
when it finishes, fails on its own (its error goes to ``on_error``) or is ``cancelled``.
:meth:`LocalEngine.generate_batch` is one ``add`` then ``step`` until empty.

Example:
    >>> batch = engine.start_batch(None, on_finish=lambda i, c: print(i, c.text))  # doctest: +SKIP
    >>> batch.add([req_a]); batch.step(); batch.add([req_b])                       # doctest: +SKIP
    >>> while batch.active: batch.step()                                           # doctest: +SKIP
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F


def _cache_kwarg() -> str:
    """transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns there);
    vLLM's CPU build pins transformers < 5.20, which knows only the old one."""
    import inspect

    from transformers import LlamaForCausalLM
    return "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"


CACHE_KWARG = _cache_kwarg()

from .base import Completion, Request, SamplingParams


@dataclass
class _Row:
    index: int
    params: SamplingParams
    generator: torch.Generator
    prompt_len: int
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    text: str = ""
    finish: str = ""


class RunningBatch:
    """Rows decoding in shared forward passes with one adapter (see the module doc).

    ``on_token(i, id, text, logprob)`` per sampled token; ``on_finish(i, Completion)`` once per
    row as it leaves (``finish_reason`` "error"/"cancelled" included); ``on_error(i, exc)``: a
    row's own failure (without it, raised); ``cancelled(i)`` is asked every step.
    """

    def __init__(self, engine, adapter: str | None, on_token=None, on_finish=None,
                 on_error: Callable[[int, Exception], None] | None = None,
                 cancelled: Callable[[int], bool] | None = None):
        self.engine, self.adapter = engine, adapter
        self.on_token, self.on_finish, self.on_error, self.cancelled = (
            on_token, on_finish, on_error, cancelled)
        self.rows: dict[int, _Row] = {}   # active rows by index
        self.active: list[int] = []       # row index per batch position
        self.cache = self.mask = self.input_ids = None
        self.next_index, self._joined = 0, False   # the index the next added row gets

    @property
    def can_join(self) -> bool:
        """Rows can join only a plain (non-sliding) dynamic cache, which we know how to pad."""
        from transformers.cache_utils import DynamicLayer
        return self.cache is None or all(type(layer) is DynamicLayer for layer in self.cache.layers)

    # ------------------------------------------------------------------ rows in
    def add(self, requests: Sequence[Request]) -> list[int]:
        """Prefill ``requests`` and sample their first token; returns their row indexes."""
        from transformers import DynamicCache
        indexes, rows, prompts = [], [], []
        for r in requests:
            row = _Row(self.next_index, r.params, torch.Generator(), 0)
            self.next_index += 1
            indexes.append(row.index)
            try:
                ids = self.engine.encode(r.prompt)
                row.prompt_len = len(ids)
                row.generator.manual_seed(r.params.seed if r.params.seed is not None
                                          else random.getrandbits(63))
            except Exception as e:
                self._fail(row, e)
                self._leave(row)
                continue
            self.rows[row.index] = row
            rows.append(row.index)
            prompts.append(ids)
        if not rows:
            return indexes
        width, pad = max(map(len, prompts)), self.engine.tokenizer.pad_token_id
        dev = self.engine.device
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=dev)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=dev)
        cache = DynamicCache()
        logits = self._forward(input_ids, mask, cache)
        keep, next_ids = self._sample(logits, rows)
        if not keep:
            return indexes
        idx = torch.tensor(keep, device=dev)
        if len(keep) < len(rows):
            cache.reorder_cache(idx)
        mask = torch.cat([mask.index_select(0, idx), mask.new_ones(len(keep), 1)], dim=1)
        rows = [rows[b] for b in keep]
        if self.cache is None:
            self.cache, self.mask, self.active = cache, mask, rows
            self.input_ids = torch.tensor(next_ids, device=dev).unsqueeze(1)
        else:
            self._merge(cache, mask, rows, next_ids)
        return indexes

    def _merge(self, cache, mask, rows: list[int], next_ids: list[int]) -> None:
        """Left-pad the shorter of the running and the new caches, then stack them."""
        self._joined = True
        a, b = self.mask.shape[1], mask.shape[1]
        width = max(a, b)
        for old, new in zip(self.cache.layers, cache.layers):
            old.keys = torch.cat([F.pad(old.keys, (0, 0, width - a, 0)),
                                  F.pad(new.keys, (0, 0, width - b, 0))])
            old.values = torch.cat([F.pad(old.values, (0, 0, width - a, 0)),
                                    F.pad(new.values, (0, 0, width - b, 0))])
        self.mask = torch.cat([F.pad(self.mask, (width - a, 0)), F.pad(mask, (width - b, 0))])
        self.input_ids = torch.cat([self.input_ids,
                                    torch.tensor(next_ids, device=self.mask.device).unsqueeze(1)])
        self.active = self.active + rows

    # ------------------------------------------------------------------ decoding
    def step(self) -> None:
        """One forward pass over every active row's last token; finished rows leave."""
        logits = self._forward(self.input_ids, self.mask, self.cache)
        keep, next_ids = self._sample(logits, self.active)
        if len(keep) < len(self.active):
            if not keep:
                self.active, self.cache = [], None
                return
            idx = torch.tensor(keep, device=self.mask.device)
            self.cache.reorder_cache(idx)
            self.mask = self.mask.index_select(0, idx)
            self.active = [self.active[b] for b in keep]
            if self._joined:   # drop columns that are padding for every row left
                self._trim()
        self.input_ids = torch.tensor(next_ids, device=self.mask.device).unsqueeze(1)
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(self.active), 1)], dim=1)

    def _trim(self) -> None:
        start = int(self.mask.any(0).int().argmax())
        if start > 0:
            self.mask = self.mask[:, start:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[..., start:, :], layer.values[..., start:, :]

    def _forward(self, input_ids, mask, cache) -> torch.Tensor:
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        if cache.get_seq_length() > 0:
            position_ids = position_ids[:, -input_ids.shape[1]:]
        with self.engine._adapter_context(self.adapter):
            return self.engine.model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids,
                                     **{CACHE_KWARG: cache}, use_cache=True,
                                     logits_to_keep=1).logits[:, -1, :].float()  # no prefill lm_head

    def _sample(self, logits: torch.Tensor, order: list[int]) -> tuple[list[int], list[int]]:
        """Pick each row's next token; returns the batch positions that go on and their tokens."""
        engine = self.engine
        logprobs = torch.log_softmax(logits, dim=-1)
        keep, next_ids = [], []
        for b, ri in enumerate(order):
            row = self.rows[ri]
            if self.cancelled is not None and self.cancelled(ri):
                row.finish = "cancelled"
            else:
                try:
                    tok = engine._pick(logits[b], row.params, row.generator)
                    lp = float(logprobs[b, tok])
                    row.ids.append(tok)
                    row.logprobs.append(lp)
                    engine._check_finish(row, tok)
                    if self.on_token is not None:  # every sampled token, the final EOS included
                        self.on_token(ri, tok, engine.tokenizer.decode([tok]), lp)
                except Exception as e:   # this row alone fails
                    self._fail(row, e)
            if row.finish:
                self._leave(self.rows.pop(ri))
            else:
                keep.append(b)
                next_ids.append(tok)
        return keep, next_ids

    def _fail(self, row: _Row, e: Exception) -> None:
        if self.on_error is None:
            raise e
        row.finish = "error"
        self.on_error(row.index, e)

    def _leave(self, row: _Row) -> None:
        if self.on_finish is not None:
            self.on_finish(row.index, self.engine._completion(row))


def run_to_end(batch: RunningBatch, requests: Sequence[Request]) -> list[Completion]:
    """Decode ``requests`` as one batch to the end; completions in request order."""
    out: dict[int, Completion] = {}
    user = batch.on_finish

    def finish(i: int, c: Completion) -> None:
        out[i] = c
        if user is not None:
            user(i, c)
    batch.on_finish = finish
    indexes = batch.add(requests)
    while batch.active:
        batch.step()
    return [out[i] for i in indexes]
