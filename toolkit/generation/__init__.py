"""Generation: one :class:`Generator` interface; the local engine; endpoint clients."""
from __future__ import annotations

from .base import Completion, Generator, Request, SamplingParams

__all__ = ["Completion", "Generator", "Request", "SamplingParams", "make_generator"]


def make_generator(model: str, backend: str = "local", adapter: str | None = None,
                   batch_size: int = 16, **endpoint_options) -> Generator:
    """The generator a stage should use: ``local`` (in-process engine) or ``endpoint`` (URLs)."""
    if backend == "local":
        from .engine import LocalEngine
        adapters = {"default": adapter} if adapter else None
        return LocalEngine(model, adapters=adapters, default_adapter="default" if adapter else None,
                           batch_size=batch_size)
    if backend == "endpoint":  # endpoints=[urls], api="tgi"|"openai", concurrency, cache_dir, token, timeout
        from .endpoint import EndpointGenerator
        return EndpointGenerator(model, adapter=adapter, **endpoint_options)
    raise ValueError(f"unknown generation backend {backend!r}; use 'local' or 'endpoint'")
