"""Model roles: one typed object for every model a stage calls (the SLM, the Oracle, the judge).

A role is a model (a preset, a local dir, a Hub id, or ``reference``: the dataset's own worked
solutions) plus the backend that serves it and that backend's typed options (lighteval's model
configs, TRL's ``ModelConfig``). Sample, the Oracle variants, score's judge and learner, evaluate,
the Space and ``qup serve`` all compose it; :meth:`RoleConfig.generator` is the one builder.

    slm:    {model: smollm2-135m-instruct, dtype: bfloat16, transformers: {batch_size: 32}}
    oracle: {model: Qwen/Qwen2.5-72B-Instruct, backend: endpoint,
             endpoint: {urls: [http://a:8080, http://b:8080], api: openai}}
    oracle: reference                    # a plain string is {model: ...}

``backend: auto`` (the default) is resolved once per process: vLLM where it is installed and
starts here, else transformers (:func:`toolkit.generation.resolve_backend`). :meth:`engine` names
the engine the builder builds (``vllm 0.32.0``); it enters step keys. What of a role changes
results is :func:`toolkit.config.keyed` of it: the model, the dtype and the resolved backend's
options without their :func:`~toolkit.config.volatile` fields.

A backend is its module (a :class:`~toolkit.generation.base.Generator` and an options dataclass),
one options field on :class:`RoleConfig` and one :data:`BACKENDS` line.

Example:
    >>> RoleConfig(model="qwen2.5-coder-0.5b-instruct").enabled
    True
    >>> RoleConfig(model="reference").generator().model_id
    'reference'
    >>> RoleConfig(model="m", backend="transformers", vllm=VLLMOptions(max_model_len=512))
    Traceback (most recent call last):
    toolkit.generation.roles.RoleError: vllm.max_model_len=512 is a vLLM option, but backend is transformers
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from ..config import volatile
from ..errors import QupError

REFERENCE = "reference"
ALIASES = {"local": "transformers"}     # the name before vLLM came


class RoleError(QupError, ValueError):
    """A model role is configured wrongly."""


def _h(text: str, **more) -> dict:
    return {"help": text, **more}


@dataclass
class TransformersOptions:
    """In-process transformers ``generate`` (static batches, PEFT adapters)."""
    batch_size: int = volatile(16, "sequences per forward pass (transformers)")

    def __post_init__(self):
        if self.batch_size < 1:
            raise RoleError(f"transformers.batch_size must be >= 1, got {self.batch_size}")


@dataclass
class VLLMOptions:
    """vLLM engine settings of a role (``backend: vllm``/``auto``); vLLM's own names.

    Multi-node data-parallel generation is vLLM's (Ray): ``data_parallel_size`` > 1 with the
    ``VLLM_*``/Ray environment of vLLM's docs; nothing here changes for it."""
    tensor_parallel_size: int = field(default=1, metadata=_h("GPUs per engine (vllm)"))
    data_parallel_size: int = volatile(1, "engine replicas (vllm)")
    gpu_memory_utilization: float = volatile(0.9, "fraction of GPU memory vLLM takes (vllm; on CPU "
                                                  "see kv_cache_gib)")
    max_model_len: int = field(default=0, metadata=_h("context length (vllm; 0 = the model's, on CPU at most 2048)"))
    kv_cache_gib: float = volatile(2.0, "KV cache size on CPU, GiB (vllm)")
    max_lora_rank: int = volatile(64, "largest adapter rank served (vllm; 0 = no LoRA)")
    max_loras: int = volatile(4, "adapters in one batch (vllm)")
    enforce_eager: bool = volatile(False, "no torch.compile: an engine starts in ~20 s instead of 35-95 s, "
                                          "decodes up to a fifth slower (vllm; benchmarks/vllm_start.py)")

    def __post_init__(self):
        for name in ("tensor_parallel_size", "data_parallel_size", "max_loras"):
            if getattr(self, name) < 1:
                raise RoleError(f"vllm.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise RoleError(f"vllm.gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.max_model_len < 0 or self.kv_cache_gib <= 0 or self.max_lora_rank < 0:
            raise RoleError("vllm.max_model_len and vllm.max_lora_rank must be >= 0, vllm.kv_cache_gib > 0")


@dataclass
class EndpointOptions:
    """A model served elsewhere: TGI or OpenAI-compatible servers (replicas of one model)."""
    urls: list[str] = volatile(list, "server URLs, replicas of one model (endpoint)")
    api: str = field(default="tgi", metadata=_h("tgi | openai (endpoint)"))
    concurrency: int = volatile(16, "requests in flight (endpoint)")
    retries: int = volatile(8, "retries per request (endpoint)")
    cache_dir: str = volatile("", "request cache dir (endpoint)")

    def __post_init__(self):
        if self.api not in ("tgi", "openai"):
            raise RoleError(f"endpoint.api must be tgi or openai, got {self.api!r}")
        bad = [u for u in self.urls if not u.startswith(("http://", "https://"))]
        if bad:
            raise RoleError(f"endpoint.urls: {bad[0][:200]!r} is not an http(s) URL")
        if self.concurrency < 1 or self.retries < 0:
            raise RoleError(f"endpoint.concurrency must be >= 1 and endpoint.retries >= 0, got "
                            f"{self.concurrency} and {self.retries}")


def changed(options) -> list[str]:
    """The options set away from their defaults, as ``section.name=value``."""
    default = type(options)()
    section = {v: k for k, v in _SECTIONS.items()}[type(options)]
    return [f"{section}.{f.name}={getattr(options, f.name)}" for f in dataclasses.fields(options) if getattr(options, f.name) != getattr(default, f.name)]


@dataclass
class RoleConfig:
    model: str = field(default="", metadata=_h("preset, model dir, Hub id, or `reference` (the "
                                               "dataset's own solutions); '' = none"))
    backend: str = volatile("auto", "auto (vLLM where it runs) | transformers | vllm | endpoint | "
                                    "reference; the engine it resolves to is keyed")
    dtype: str = field(default="auto", metadata=_h("auto (bf16 where native) | float32 | bfloat16 "
                                                   "(in-process backends)"))
    transformers: TransformersOptions = field(default_factory=TransformersOptions,
                                              metadata=_h("transformers options", prefix=True))
    vllm: VLLMOptions = field(default_factory=VLLMOptions, metadata=_h("vLLM options", prefix=True))
    endpoint: EndpointOptions = field(default_factory=EndpointOptions,
                                      metadata=_h("endpoint options", prefix=True))

    # the flat keys of the role before it had one options section per backend
    __moved__ = {"batch_size": "transformers.batch_size", "endpoints": "endpoint.urls",
                 "api": "endpoint.api", "concurrency": "endpoint.concurrency",
                 "retries": "endpoint.retries", "cache_dir": "endpoint.cache_dir"}

    def __post_init__(self):
        self.backend = ALIASES.get(self.backend, self.backend)
        if self.model == REFERENCE and self.backend == "auto":
            self.backend = REFERENCE
        if self.backend == REFERENCE:
            self.model = self.model or REFERENCE
            if self.model != REFERENCE:
                raise RoleError(f"backend: reference serves model `reference`, got model {self.model!r}")
        if self.backend not in ("auto", *BACKENDS):
            raise RoleError(f"backend must be one of {['auto', *BACKENDS]}, got {self.backend!r}")
        allowed = {"transformers", "vllm"} if self.backend == "auto" else {BACKENDS[self.backend].options}
        for name in _SECTIONS:
            if name not in allowed and changed(getattr(self, name)):
                raise RoleError(f"{changed(getattr(self, name))[0]} is a{'n' if name[0] in 'e' else ''} "
                                f"{_KIND[name]} option, but backend is {self.backend}")
        if self.backend == "endpoint" and self.model and not self.endpoint.urls:
            raise RoleError("backend endpoint needs endpoint.urls: [URL, ...]")

    @classmethod
    def from_str(cls, model: str) -> "RoleConfig":
        """``"qwen"`` as a role: ``{model: qwen}`` (recipes may name a role by its model)."""
        return cls(model=model)

    @property
    def enabled(self) -> bool:
        return bool(self.model)

    def resolved(self) -> str:
        """The backend this role runs on: ``auto`` resolved (once per process)."""
        from . import resolve_backend
        return resolve_backend(self.backend)

    def engine(self) -> str:
        """The engine :meth:`generator` builds, with its version (``vllm 0.32.0``, ``transformers
        5.19.0``, ``tgi endpoint``, ``reference``): recorded in provenance and step keys."""
        return BACKENDS[self.resolved()].engine(self) if self.enabled else ""

    def keyed_fields(self) -> set[str]:
        """What changes results (see :func:`toolkit.config.keyed`): model, dtype and the
        resolved backend's options (the engine itself is keyed apart, by :meth:`engine`)."""
        section = BACKENDS[self.resolved()].options if self.enabled else None
        return {"model", "dtype", *([section] if section else [])}

    def generator(self, adapter: str | dict[str, str] | None = None):
        """The Generator serving this role (or the :class:`ReferenceOracle`). ``adapter``: one
        PEFT adapter dir or Hub id applied to every request, or ``{name: dir}`` picked per
        request by ``Request.adapter``."""
        if not self.model:
            raise RoleError("no model configured for this role")
        adapters = adapter if isinstance(adapter, dict) else {"default": adapter} if adapter else None
        default = "default" if isinstance(adapter, str) and adapter else None
        backend = self.resolved()
        try:
            return BACKENDS[backend].build(self, adapters, default)
        except Exception as e:
            from . import fall_back
            if self.backend != "auto" or backend != "vllm" or not fall_back(e):
                raise
            return BACKENDS["transformers"].build(self, adapters, default)


class ReferenceOracle:
    """The dataset's own worked solutions playing the Oracle: it writes nothing, it is read."""
    model_id, model_revision, dtype, label = REFERENCE, "", "", REFERENCE

    def solution(self, row: dict) -> str:
        return (row.get("gold_solution") or "").strip()


# ------------------------------------------------------------------------------ the backends
def _transformers(role: RoleConfig, adapters, default):
    from .engine import LocalEngine
    return LocalEngine(role.model, adapters=adapters, default_adapter=default,
                       batch_size=role.transformers.batch_size, dtype=role.dtype)


def _vllm(role: RoleConfig, adapters, default):
    from .vllm_engine import VLLMEngine
    return VLLMEngine(role.model, adapters=adapters, default_adapter=default, dtype=role.dtype,
                      options=role.vllm)


def _endpoint(role: RoleConfig, adapters, default):
    from .endpoint import EndpointGenerator
    if adapters and len(adapters) > 1:
        raise RoleError("backend endpoint: one adapter per role (the server loads them)")
    e = role.endpoint
    return EndpointGenerator(role.model, e.urls, api=e.api, concurrency=e.concurrency,
                             cache_dir=e.cache_dir or None, max_retries=e.retries,
                             adapter=next(iter(adapters.values())) if adapters else None)


def _transformers_version(role) -> str:
    import transformers
    return f"transformers {transformers.__version__}"


def _vllm_version(role) -> str:
    from .vllm_engine import version
    return f"vllm {version()}"


@dataclass(frozen=True)
class Backend:
    options: str | None                        # the RoleConfig field holding its options
    build: Callable                            # (role, adapters | None, default adapter) -> Generator
    engine: Callable[[RoleConfig], str]        # the engine it builds, named before building


BACKENDS: dict[str, Backend] = {
    "transformers": Backend("transformers", _transformers, _transformers_version),
    "vllm": Backend("vllm", _vllm, _vllm_version),
    "endpoint": Backend("endpoint", _endpoint, lambda role: f"{role.endpoint.api} endpoint"),
    REFERENCE: Backend(None, lambda role, adapters, default: ReferenceOracle(), lambda role: REFERENCE),
}
_SECTIONS = {"transformers": TransformersOptions, "vllm": VLLMOptions, "endpoint": EndpointOptions}
_KIND = {"transformers": "transformers", "vllm": "vLLM", "endpoint": "endpoint"}


def check_backend(backend: str, vllm: VLLMOptions | None = None, where: str = "role") -> str:
    """A backend name, canonical (``local`` -> ``transformers``); an unknown one, or ``vllm``
    options changed for a backend that is not vLLM, is an error naming ``where``."""
    backend = ALIASES.get(backend, backend)
    if backend not in ("auto", *BACKENDS):
        raise RoleError(f"{where}: backend must be one of {['auto', *BACKENDS]}, got {backend!r}")
    if vllm is not None and backend not in ("auto", "vllm") and changed(vllm):
        raise RoleError(f"{where}: {changed(vllm)[0]} is a vLLM option, but backend is {backend}")
    return backend
