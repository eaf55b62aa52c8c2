"""Adaptation cost: the learner's mean token negative log-likelihood of a completion, given exactly
the prompt SFT will use.

The texts are built as TRL's ``SFTTrainer`` tokenises a conversational prompt-completion example
(:func:`toolkit.sft.to_chat`, as ``train`` does): the prompt is the chat template of the user turn with the
generation prompt, the completion is the rest of the rendered conversation, so the scored tokens
are exactly the loss tokens, the closing ``<|im_end|>`` included.

Example:
    >>> learner = LocalEngine("smollm2-135m-instruct")                         # doctest: +SKIP
    >>> prompts, completions = sft_texts(ds, learner.tokenizer)                # doctest: +SKIP
    >>> nll(learner, prompts, completions)[0]                                 # (mean NLL, tokens)  # doctest: +SKIP
    (1.234, 87)
"""
from __future__ import annotations

import math
from typing import Sequence

from ..errors import QupError


class AdaptationCostError(QupError, ValueError):
    """A row cannot be scored as SFT would see it."""


def sft_texts(ds, tokenizer) -> tuple[list[str], list[str]]:
    """Per row, ``(prompt text, completion text)`` as the SFT loss sees them (see module doc)."""
    from ..sft import TrainDataError, to_chat
    try:
        chat = to_chat(ds)
    except TrainDataError as e:
        raise AdaptationCostError(f"adaptation cost: {e}") from None
    prompts, completions = [], []
    for i, row in enumerate(chat):
        head = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
        if not full.startswith(head):
            raise AdaptationCostError(f"row {i}: the chat template renders the prompt differently "
                                      "alone and with the completion; cannot split the loss tokens")
        prompts.append(head)
        completions.append(full[len(head):])
    return prompts, completions


def nll(learner, prompts: Sequence[str], completions: Sequence[str], progress: bool = True
        ) -> list[tuple[float | None, int]]:
    """``(mean token NLL, number of scored tokens)`` per pair under ``learner`` (a Generator:
    the local engine batches the forward passes; a TGI endpoint returns prefill logprobs)."""
    out = []
    for lps in learner.score(prompts, completions, progress=progress):
        lps = [x for x in lps if x is not None]
        out.append((-math.fsum(lps) / len(lps) if lps else None, len(lps)))
    return out


def score_rows(rows: list[dict], models) -> dict[str, list]:
    """The ``nll``/``nll_tokens`` columns of ``rows`` under ``models.learner``."""
    from datasets import Dataset
    keep = ("question", "completion", "prompt_id", "trace_id")
    prompts, completions = sft_texts(Dataset.from_list([{k: r[k] for k in keep} for r in rows]),
                                     models.learner.tokenizer)
    pairs = nll(models.learner, prompts, completions, progress=False)
    return {"nll": [n for n, _ in pairs], "nll_tokens": [t for _, t in pairs]}
