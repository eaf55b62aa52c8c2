"""Model roles: which model plays the SLM, the Oracle (and later the judge), and what serves it.

A role is a preset, a local dir or a Hub id, served in-process (``backend: vllm`` or
``transformers``; ``auto``, the default, picks vLLM where it is installed and starts) or by TGI /
OpenAI-compatible endpoints (several replicas), through the same :class:`Generator` interface, so
Oracle calls are batched, cached, retried and resumable exactly like sampling. The Oracle may
also be ``reference``: the dataset's own worked (human-written) solutions.

Example:
    >>> RoleConfig(model="qwen2.5-coder-0.5b-instruct").enabled
    True
    >>> RoleConfig(model="reference").generator().model_id
    'reference'
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import QupError

REFERENCE = "reference"
VOLATILE = ("batch_size", "concurrency", "cache_dir", "endpoints", "retries")  # how, not what
BACKENDS = ("auto", "transformers", "vllm", "endpoint")
ALIASES = {"local": "transformers"}     # the name before vLLM came


class RoleError(QupError, ValueError):
    """A model role is configured wrongly."""


@dataclass
class VLLMOptions:
    """vLLM engine settings of a role (``backend: vllm``/``auto``); vLLM's own names.

    Multi-node data-parallel generation is vLLM's (Ray): ``data_parallel_size`` > 1 with the
    ``VLLM_*``/Ray environment of vLLM's docs; nothing here changes for it."""
    tensor_parallel_size: int = field(default=1, metadata={"help": "GPUs per engine (vllm)"})
    data_parallel_size: int = field(default=1, metadata={"help": "engine replicas (vllm)"})
    gpu_memory_utilization: float = field(default=0.9, metadata={
        "help": "fraction of GPU memory vLLM takes (vllm; on CPU see kv_cache_gib)"})
    max_model_len: int = field(default=0, metadata={"help": "context length (vllm; 0 = the model's)"})
    kv_cache_gib: float = field(default=2.0, metadata={"help": "KV cache size on CPU, GiB (vllm)"})
    max_lora_rank: int = field(default=64, metadata={"help": "largest adapter rank served (vllm; 0 = no LoRA)"})
    max_loras: int = field(default=4, metadata={"help": "adapters in one batch (vllm)"})

    def __post_init__(self):
        for name in ("tensor_parallel_size", "data_parallel_size", "max_loras"):
            if getattr(self, name) < 1:
                raise RoleError(f"vllm.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise RoleError(f"vllm.gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.max_model_len < 0 or self.kv_cache_gib <= 0 or self.max_lora_rank < 0:
            raise RoleError("vllm.max_model_len and vllm.max_lora_rank must be >= 0, vllm.kv_cache_gib > 0")

    def changed(self) -> list[str]:
        """The options set away from their defaults (``vllm.<name>=<value>``)."""
        return [f"vllm.{k}={v}" for k, v in asdict(self).items() if v != getattr(VLLMOptions, k)]


def check_backend(backend: str, vllm: VLLMOptions, where: str = "role") -> str:
    """The backend's canonical name; a vLLM option given to another backend is an error."""
    backend = ALIASES.get(backend, backend)
    if backend not in BACKENDS:
        raise RoleError(f"{where}: backend must be one of {list(BACKENDS)}, got {backend!r}")
    if backend in ("transformers", "endpoint") and vllm.changed():
        raise RoleError(f"{where}: {vllm.changed()[0]} is a vLLM option, but backend is {backend}")
    return backend


@dataclass
class RoleConfig:
    model: str = field(default="", metadata={"help": "preset, model dir, Hub id, or `reference` "
                                                     "(the dataset's own solutions); '' = none"})
    backend: str = field(default="auto", metadata={"help": "auto | vllm | transformers | endpoint"})
    endpoints: list[str] = field(default_factory=list, metadata={"help": "endpoint URLs (backend=endpoint)"})
    api: str = field(default="tgi", metadata={"help": "tgi | openai (backend=endpoint)"})
    dtype: str = field(default="auto", metadata={"help": "auto | float32 | bfloat16 (in-process backends)"})
    batch_size: int = 16
    concurrency: int = 16
    cache_dir: str = field(default="", metadata={"help": "request cache dir (backend=endpoint)"})
    retries: int = 8
    vllm: VLLMOptions = field(default_factory=VLLMOptions, metadata={"help": "vLLM engine options"})

    def __post_init__(self):
        self.backend = check_backend(self.backend, self.vllm)
        if self.backend == "endpoint" and not self.endpoints:
            raise RoleError("backend=endpoint needs endpoints: [URL, ...]")

    @property
    def enabled(self) -> bool:
        return bool(self.model)

    def generator(self):
        """The Generator serving this role (or a :class:`ReferenceOracle`)."""
        if not self.model:
            raise RoleError("no model configured for this role")
        if self.model == REFERENCE:
            return ReferenceOracle()
        from . import make_generator
        opts = {}
        if self.backend == "endpoint":
            opts = dict(endpoints=self.endpoints, api=self.api, concurrency=self.concurrency,
                        cache_dir=self.cache_dir or None, max_retries=self.retries)
        return make_generator(self.model, backend=self.backend, batch_size=self.batch_size,
                              dtype=self.dtype, vllm=self.vllm, **opts)


class ReferenceOracle:
    """The dataset's own worked solutions playing the Oracle: it writes nothing, it is read."""
    model_id, model_revision, dtype = REFERENCE, "", ""

    def solution(self, row: dict) -> str:
        return (row.get("gold_solution") or "").strip()
