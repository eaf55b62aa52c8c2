"""Generation: one :class:`Generator` interface; the local engine; endpoint clients.

Example:
    >>> gen = make_generator("tiny-random", dtype="float32")                 # doctest: +SKIP
    >>> gen.dtype                                                            # doctest: +SKIP
    'float32'
"""
from __future__ import annotations

from .base import Completion, Generator, Request, SamplingParams, ScoreError

__all__ = ["Completion", "Generator", "Request", "SamplingParams", "ScoreError", "make_generator"]


def make_generator(model: str, backend: str = "local", adapter: str | None = None,
                   batch_size: int = 16, dtype="auto", **endpoint_options) -> Generator:
    """The generator a stage should use: ``local`` (in-process engine) or ``endpoint`` (URLs).

    ``dtype`` (local only: an endpoint's server picks its own): auto | float32 | bfloat16 | float16.
    """
    if backend == "local":
        from .engine import LocalEngine
        adapters = {"default": adapter} if adapter else None
        return LocalEngine(model, adapters=adapters, default_adapter="default" if adapter else None,
                           batch_size=batch_size, dtype=dtype)
    if backend == "endpoint":  # endpoints=[urls], api="tgi"|"openai", concurrency, cache_dir, token, timeout
        from .endpoint import EndpointGenerator
        return EndpointGenerator(model, adapter=adapter, **endpoint_options)
    raise ValueError(f"unknown generation backend {backend!r}; use 'local' or 'endpoint'")
