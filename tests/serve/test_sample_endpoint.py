"""The smoke-sized ``sample`` stage through a served endpoint gives the local backend's dataset."""
from __future__ import annotations

import pytest

from toolkit.serve import TGIServer
from toolkit.sources import SourceConfig


@pytest.mark.parametrize("api", ["tgi", "openai"])
def test_sample_stage_endpoint_equals_local(tiny_model, shared_data, tmp_path, api):
    from toolkit.sources import load_problems
    from toolkit.stages.sample import SampleConfig, sample

    smoke = dict(model=tiny_model, problems=SourceConfig(source=str(shared_data / "svamp"), limit=4), k=2,
                 max_new_tokens=24, temperature=1.0, shard_size=4,
                 batch_size=1, dtype="float32")  # same numerics both sides: see test_endpoint.py
    local_cfg = SampleConfig(**smoke)
    problems = load_problems(local_cfg.problems)
    local = sample(problems, local_cfg, local_cfg.generator())
    with TGIServer(tiny_model, max_batch_size=1, dtype="float32") as server:
        cfg = SampleConfig(**smoke, backend="endpoint", endpoints=[server.url], api=api,
                           concurrency=4, cache_dir=str(tmp_path / "cache"))
        remote = sample(problems, cfg, cfg.generator(), shard_dir=tmp_path / "shards")
    assert remote.features == local.features
    assert len(remote) == len(local) == 8
    cols = ["trace_id", "seed", "model_id", "model_revision", "params", "prompt", "completion",
            "prompt_tokens", "completion_tokens", "finish_reason"]
    assert remote.select_columns(cols).to_list() == local.select_columns(cols).to_list()
