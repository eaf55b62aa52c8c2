"""Generation: one :class:`Generator` interface; in-process engines (vLLM, transformers); endpoints.

A backend is one entry of :data:`BACKENDS` (a function building the Generator); ``auto`` picks
vLLM where it is installed and starts on this machine, else transformers, and says so once.
``QUP_BACKEND`` (``transformers`` | ``vllm``) overrides what ``auto`` picks (the test suite keeps
tiny transformers models and a focused vLLM suite).

Example:
    >>> gen = make_generator("tiny-random", backend="transformers", dtype="float32")  # doctest: +SKIP
    >>> gen.dtype, engine_label(gen)                                                 # doctest: +SKIP
    ('float32', 'transformers 5.19.0')
"""
from __future__ import annotations

import functools
import logging
import os
import platform

from .base import Completion, Generator, Request, SamplingParams, ScoreError
from .roles import VLLMOptions, check_backend

__all__ = ["Completion", "Generator", "Request", "SamplingParams", "ScoreError", "make_generator",
           "resolve_backend", "engine_id", "engine_label", "BACKENDS"]
log = logging.getLogger(__name__)


def _transformers(model, adapter, batch_size, dtype, vllm, **_):
    from .engine import LocalEngine
    adapters = {"default": adapter} if adapter else None
    return LocalEngine(model, adapters=adapters, default_adapter="default" if adapter else None,
                       batch_size=batch_size, dtype=dtype)


def _vllm(model, adapter, batch_size, dtype, vllm, **_):
    from .vllm_engine import VLLMEngine
    adapters = {"default": adapter} if adapter else None
    return VLLMEngine(model, adapters=adapters, default_adapter="default" if adapter else None,
                      dtype=dtype, options=vllm)


def _endpoint(model, adapter, batch_size, dtype, vllm, **options):
    # endpoints=[urls], api="tgi"|"openai", concurrency, cache_dir, token, timeout
    from .endpoint import EndpointGenerator
    return EndpointGenerator(model, adapter=adapter, **options)


BACKENDS = {"transformers": _transformers, "vllm": _vllm, "endpoint": _endpoint}


@functools.lru_cache(maxsize=1)
def vllm_usable() -> str:
    """'' when vLLM can run here, else why not (checked without starting an engine)."""
    from .vllm_engine import version
    if version() is None:
        return "vLLM is not installed"
    if platform.system() != "Linux":
        return f"vLLM's CPU build runs on Linux, not {platform.system()}"
    try:
        import torch
        if torch.cuda.is_available():
            return ""
        flags = open("/proc/cpuinfo").read()
    except OSError as e:
        return f"cannot read the CPU flags ({e})"
    if platform.machine() != "x86_64" or " avx2" not in flags:
        return "vLLM's CPU build needs an x86-64 CPU with AVX2"
    return ""


def resolve_backend(backend: str = "auto") -> str:
    """``auto`` -> ``vllm`` or ``transformers`` (logged once); other names are checked and kept."""
    backend = check_backend(backend, VLLMOptions())
    if backend != "auto":
        return backend
    forced = os.environ.get("QUP_BACKEND", "")
    if forced:
        return check_backend(forced, VLLMOptions(), "QUP_BACKEND")
    why = vllm_usable()
    _say_once("backend auto: vllm" if not why else f"backend auto: transformers ({why})")
    return "transformers" if why else "vllm"


@functools.lru_cache(maxsize=None)
def _say_once(line: str) -> None:
    log.info(line)


def engine_label(gen) -> str:
    """What served a Generator, with its version: ``vllm 0.32.0``, ``transformers 5.19.0``,
    ``tgi endpoint``; recorded in provenance, cards, ``run.json`` and step keys."""
    return getattr(gen, "label", "") or type(gen).__name__


def engine_id(backend: str) -> str:
    """The engine a backend name stands for, with its version, before any model is loaded (step
    keys): ``vllm 0.32.0``, ``transformers 5.19.0``, ``endpoint`` (the server decides)."""
    backend = resolve_backend(backend)
    if backend == "vllm":
        from .vllm_engine import version
        return f"vllm {version()}"
    if backend == "transformers":
        import transformers
        return f"transformers {transformers.__version__}"
    return backend


def make_generator(model: str, backend: str = "auto", adapter: str | None = None,
                   batch_size: int = 16, dtype="auto", vllm: VLLMOptions | None = None,
                   **endpoint_options) -> Generator:
    """The generator a stage should use (see :data:`BACKENDS`; ``auto``: :func:`resolve_backend`).

    ``dtype`` (in-process backends: an endpoint's server picks its own): auto | float32 | bfloat16.
    """
    vllm = vllm or VLLMOptions()
    backend = check_backend(backend, vllm, f"model {model}")
    chosen = resolve_backend(backend)
    try:
        return BACKENDS[chosen](model, adapter, batch_size, dtype, vllm, **endpoint_options)
    except Exception as e:
        from .vllm_engine import VLLMError
        if backend != "auto" or chosen != "vllm" or not isinstance(e, VLLMError):
            raise
        log.warning("backend auto: vLLM did not start (%s); using transformers", e)
        return BACKENDS["transformers"](model, adapter, batch_size, dtype, vllm)
