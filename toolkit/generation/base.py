"""The one generation interface every stage uses, whatever serves the model.

A stage that calls a model takes a :class:`Generator`; it never knows whether that is the local
in-process engine, our TGI-compatible server, a real TGI endpoint or vLLM.

Example:
    >>> gen = LocalEngine("tiny-random")                                  # doctest: +SKIP
    >>> out = gen.generate([Request(prompt="<|im_start|>user ...", params=SamplingParams(seed=1))])  # doctest: +SKIP
    >>> out[0].text, out[0].finish_reason                                 # doctest: +SKIP
    >>> gen.score(["<prompt>"], [" 5"])      # log-probability of each completion token  # doctest: +SKIP
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol, Sequence

from ..errors import QupError


class ScoreError(QupError, ValueError):
    """A (prompt, completion) pair cannot be scored as given (e.g. a token spans the boundary)."""


@dataclass
class SamplingParams:
    """Sampling parameters, with TGI's names and semantics (temperature 0 or do_sample=False: greedy)."""
    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    do_sample: bool = True
    stop: list[str] = field(default_factory=list)
    seed: int | None = None

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature == 0

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), used in provenance columns and cache keys."""
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class Request:
    prompt: str                       # fully rendered prompt text (chat template applied)
    params: SamplingParams
    adapter: str | None = None        # LoRA adapter name (multi-LoRA servers), None = base


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str                # "eos_token" | "stop" | "length" (TGI's names)
    token_ids: list[int] = field(default_factory=list)
    token_logprobs: list[float] = field(default_factory=list)


def split_for_scoring(encode: Callable[[str], list[int]], prompts: Sequence[str],
                      completions: Sequence[str]) -> list[tuple[list[int], int]]:
    """``(ids of prompt + completion, number of prompt tokens)`` per pair, tokenised as one text.

    Raises :class:`ScoreError` naming the row when a token merges across the boundary.

    Example:
        >>> split_for_scoring(str.split, ["a b"], [" c d"])   # any str -> list encoder
        [(['a', 'b', 'c', 'd'], 2)]
    """
    if len(prompts) != len(completions):
        raise ScoreError(f"score needs one completion per prompt: got {len(prompts)} prompts "
                         f"and {len(completions)} completions")
    out = []
    for i, (p, c) in enumerate(zip(prompts, completions)):
        head, ids = encode(p), encode(p + c)
        if not head:
            raise ScoreError(f"score: prompt of row {i} is empty (its first token has no context)")
        if ids[:len(head)] != head:
            raise ScoreError(f"score: row {i}'s completion merges with the prompt's last token "
                             f"when tokenised together; end the prompt at a token boundary")
        out.append((ids, len(head)))
    return out


class Generator(Protocol):
    """What a stage needs from a model: completions, scores, the chat template, its identity."""
    model_id: str
    model_revision: str
    dtype: str                        # "bfloat16", "float32", ...; "" = unknown (remote)

    def generate(self, requests: Sequence[Request], progress: bool = True) -> list[Completion]:
        """One completion per request, in order."""

    def score(self, prompts: Sequence[str], completions: Sequence[str], adapter: str | None = None,
              progress: bool = False) -> list[list[float]]:
        """Per pair, the log-probability of each completion token given the prompt and the
        completion tokens before it (prompt tokens excluded; see :func:`split_for_scoring`)."""

    def render_chat(self, messages: list[dict]) -> str:
        """The prompt text for ``messages`` with the model's chat template and generation prompt."""


def token_ranks(logits, targets):
    """1-based rank of each target under its row of ``logits`` (a torch ``(T, V)`` and ``(T,)``):
    1 + how many logits are strictly larger than the target's (ties share the better rank); the
    RSR diagnostic reads them (:mod:`toolkit.diagnostics.compatibility`)."""
    picked = logits.gather(-1, targets[:, None])
    return 1 + (logits > picked).sum(-1)
