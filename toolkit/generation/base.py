"""The one generation interface every stage uses, whatever serves the model.

A stage that calls a model takes a :class:`Generator`; it never knows whether that is the local
in-process engine, our TGI-compatible server, a real TGI endpoint or vLLM.

Example:
    >>> gen = LocalEngine("tiny-random")                                  # doctest: +SKIP
    >>> out = gen.generate([Request(prompt="<|im_start|>user ...", params=SamplingParams(seed=1))])
    >>> out[0].text, out[0].finish_reason
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Protocol, Sequence


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


class Generator(Protocol):
    """What a stage needs from a model: completions, the chat template, and the model's identity."""
    model_id: str
    model_revision: str

    def generate(self, requests: Sequence[Request], progress: bool = True) -> list[Completion]:
        """One completion per request, in order."""

    def render_chat(self, messages: list[dict]) -> str:
        """The prompt text for ``messages`` with the model's chat template and generation prompt."""
