"""Model roles: which model plays the SLM, the Oracle (and later the judge), and what serves it.

A role is a preset, a local dir or a Hub id, served in-process (``backend: local``) or by TGI /
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

from dataclasses import dataclass, field

from ..errors import QupError

REFERENCE = "reference"
VOLATILE = ("batch_size", "concurrency", "cache_dir", "endpoints", "retries")  # how, not what


class RoleError(QupError, ValueError):
    """A model role is configured wrongly."""


@dataclass
class RoleConfig:
    model: str = field(default="", metadata={"help": "preset, model dir, Hub id, or `reference` "
                                                     "(the dataset's own solutions); '' = none"})
    backend: str = field(default="local", metadata={"help": "local | endpoint"})
    endpoints: list[str] = field(default_factory=list, metadata={"help": "endpoint URLs (backend=endpoint)"})
    api: str = field(default="tgi", metadata={"help": "tgi | openai (backend=endpoint)"})
    dtype: str = field(default="auto", metadata={"help": "auto | float32 | bfloat16 (backend=local)"})
    batch_size: int = 16
    concurrency: int = 16
    cache_dir: str = field(default="", metadata={"help": "request cache dir (backend=endpoint)"})
    retries: int = 8

    def __post_init__(self):
        if self.backend not in ("local", "endpoint"):
            raise RoleError(f"backend must be 'local' or 'endpoint', got {self.backend!r}")
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
                              dtype=self.dtype, **opts)


class ReferenceOracle:
    """The dataset's own worked solutions playing the Oracle: it writes nothing, it is read."""
    model_id, model_revision, dtype = REFERENCE, "", ""

    def solution(self, row: dict) -> str:
        return (row.get("gold_solution") or "").strip()
