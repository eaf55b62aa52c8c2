"""The smoke-sized ``sample`` stage through a served endpoint gives the local backend's dataset."""
from __future__ import annotations

import pytest

from toolkit.generation.roles import EndpointOptions, RoleConfig, TransformersOptions
from toolkit.serve import TGIServer
from toolkit.sources import SourceConfig


def _local(model: str) -> RoleConfig:   # same numerics as the server: see test_endpoint.py
    return RoleConfig(model, backend="transformers", dtype="float32", transformers=TransformersOptions(1))


@pytest.mark.parametrize("api", ["tgi", "openai"])
def test_sample_stage_endpoint_equals_local(tiny_model, shared_data, tmp_path, api):
    from toolkit.sources import load_problems
    from toolkit.stages.sample import SampleConfig, sample

    smoke = dict(problems=SourceConfig(source=str(shared_data / "svamp"), limit=4), k=2,
                 max_new_tokens=24, temperature=1.0, shard_size=4)
    local_cfg = SampleConfig(slm=_local(tiny_model), **smoke)
    problems = load_problems(local_cfg.problems)
    local = sample(problems, local_cfg, local_cfg.generator())
    with TGIServer(tiny_model, max_batch_size=1, dtype="float32") as server:
        cfg = SampleConfig(**smoke, slm=RoleConfig(tiny_model, backend="endpoint", endpoint=EndpointOptions(
            urls=[server.url], api=api, concurrency=4, cache_dir=str(tmp_path / "cache"))))
        remote = sample(problems, cfg, cfg.generator(), shard_dir=tmp_path / "shards")
    assert remote.features == local.features
    assert len(remote) == len(local) == 8
    cols = ["trace_id", "seed", "model_id", "model_revision", "params", "prompt", "completion",
            "prompt_tokens", "completion_tokens", "finish_reason"]
    assert remote.select_columns(cols).to_list() == local.select_columns(cols).to_list()


def test_sample_through_two_openai_replicas_equals_local(tiny_model, shared_data, tmp_path):
    """vLLM's way: `sample --backend endpoint --endpoint-api openai` over two replicas of our server's
    /v1/chat/completions; both get work, the rows are the local backend's."""
    import requests as http

    from toolkit.sources import load_problems
    from toolkit.stages.sample import SampleConfig, sample

    def served(url: str) -> float:
        line = next(l for l in http.get(f"{url}/metrics", timeout=10).text.splitlines()
                    if l.startswith("tgi_request_count "))
        return float(line.split()[1])
    smoke = dict(problems=SourceConfig(source=str(shared_data / "svamp"), limit=4),
                 k=2, max_new_tokens=16, temperature=1.0, shard_size=4)
    local_cfg = SampleConfig(slm=_local(tiny_model), **smoke)
    problems = load_problems(local_cfg.problems)
    local = sample(problems, local_cfg, local_cfg.generator())
    with TGIServer(tiny_model, max_batch_size=1, dtype="float32") as a, \
            TGIServer(tiny_model, max_batch_size=1, dtype="float32") as b:
        cfg = SampleConfig(**smoke, slm=RoleConfig(tiny_model, backend="endpoint", endpoint=EndpointOptions(
            urls=[a.url, b.url], api="openai", concurrency=4)))
        remote = sample(problems, cfg, cfg.generator())
        assert served(a.url) >= 1 and served(b.url) >= 1 and served(a.url) + served(b.url) == 8
    cols = ["trace_id", "seed", "prompt", "completion", "completion_tokens", "finish_reason"]
    assert remote.select_columns(cols).to_list() == local.select_columns(cols).to_list()
