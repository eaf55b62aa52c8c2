"""The server's suite runs on both engines: our transformers batcher and vLLM's async engine
(skipped, saying why, where vLLM cannot run). One vLLM engine per (model, options) serves every
server of the session, so the vLLM half costs a few engine starts, not one per test."""
from __future__ import annotations

import pytest

from toolkit.generation.roles import VLLMOptions

VLLM = VLLMOptions(kv_cache_gib=0.25, enforce_eager=True)   # tiny models: start in seconds


def _why_not_vllm() -> str:
    from toolkit.generation import vllm_usable
    return vllm_usable()


BACKENDS = ["transformers", pytest.param("vllm", marks=pytest.mark.skipif(
    bool(_why_not_vllm()), reason=f"vLLM cannot run here: {_why_not_vllm()}"))]


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def engine_options(backend) -> dict:
    """TGIServer (and make_generator) keywords of ``backend`` (small KV cache for vLLM on CPU)."""
    return {"backend": backend, "vllm": VLLM if backend == "vllm" else VLLMOptions()}
