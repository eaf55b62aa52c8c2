"""Generation: one :class:`Generator` interface; in-process engines (vLLM, transformers); endpoints.

A backend is one entry of :data:`~toolkit.generation.roles.BACKENDS`; a model role
(:class:`~toolkit.generation.roles.RoleConfig`) builds its Generator. ``auto`` is resolved once
per process (:func:`resolve_backend`): vLLM where it is installed and can start on this machine,
else transformers, said once; if vLLM then fails to start, ``auto`` falls back to transformers for
the rest of the process (:func:`fall_back`), so :func:`engine_of` always names what was built.
``QUP_BACKEND`` (``transformers`` | ``vllm``) overrides what ``auto`` picks (the test suite keeps
tiny transformers models and a focused vLLM suite).

Example:
    >>> gen = make_generator("tiny-random", backend="transformers", dtype="float32")  # doctest: +SKIP
    >>> gen.dtype, engine_of(gen)                                                   # doctest: +SKIP
    ('float32', 'transformers 5.19.0')
"""
from __future__ import annotations

import functools
import logging
import os
import platform

from .base import Completion, Generator, Request, SamplingParams, ScoreError
from .roles import BACKENDS, EndpointOptions, RoleConfig, TransformersOptions, VLLMOptions, check_backend

__all__ = ["Completion", "Generator", "Request", "SamplingParams", "ScoreError", "make_generator",
           "resolve_backend", "engine_of", "engine_label", "BACKENDS", "RoleConfig"]
log = logging.getLogger(__name__)


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


_FELL_BACK: list[str] = []   # why vLLM did not start in this process (auto uses transformers then)


def resolve_backend(backend: str = "auto") -> str:
    """``auto`` -> ``vllm`` or ``transformers`` (logged once); other names are checked and kept."""
    backend = check_backend(backend)
    if backend != "auto":
        return backend
    forced = os.environ.get("QUP_BACKEND", "")
    if forced:
        return check_backend(forced, where="QUP_BACKEND")
    why = _FELL_BACK[0] if _FELL_BACK else vllm_usable()
    _say_once("backend auto: vllm" if not why else f"backend auto: transformers ({why})")
    return "transformers" if why else "vllm"


def fall_back(error: Exception) -> bool:
    """After vLLM failed to start under ``auto``: whether to use transformers instead (a
    :class:`~toolkit.generation.vllm_engine.VLLMError`); if so, ``auto`` means transformers for
    the rest of this process, so step keys name the engine that runs (see :mod:`toolkit.steps`)."""
    from .vllm_engine import VLLMError
    if not isinstance(error, VLLMError):
        return False
    log.warning("backend auto: vLLM did not start (%s); using transformers", error)
    _FELL_BACK[:] = [f"vLLM did not start: {error}"]
    return True


@functools.lru_cache(maxsize=None)
def _say_once(line: str) -> None:
    log.info(line)


def engine_of(what) -> str:
    """The engine (name + version) serving ``what``, as provenance, cards, ``run.json`` and step
    keys record it: a built Generator (``vllm 0.32.0``, ``transformers 5.19.0``, ``tgi
    endpoint``), a :class:`RoleConfig` (the engine its builder builds, ``auto`` resolved) or a
    backend name."""
    if isinstance(what, str):
        return BACKENDS[resolve_backend(what)].engine(RoleConfig())
    if isinstance(what, RoleConfig):
        return what.engine()
    return getattr(what, "label", "") or type(what).__name__


engine_label = engine_id = engine_of    # the names used before: one function
# (not `engine`: that name is the submodule engine.py once LocalEngine is imported)


def make_generator(model: str, backend: str = "auto", adapter: str | None = None,
                   batch_size: int = 16, dtype="auto", vllm: VLLMOptions | None = None,
                   endpoints: list[str] | None = None, api: str = "tgi", concurrency: int = 16,
                   cache_dir: str | None = None, max_retries: int = 8) -> Generator:
    """``RoleConfig(...).generator(adapter)`` from keyword arguments (scripts, benchmarks)."""
    role = RoleConfig(model=model, backend=backend, dtype=dtype,
                      transformers=TransformersOptions(batch_size=batch_size), vllm=vllm or VLLMOptions(),
                      endpoint=EndpointOptions(urls=list(endpoints or []), api=api, concurrency=concurrency,
                                               retries=max_retries, cache_dir=cache_dir or ""))
    return role.generator(adapter)
