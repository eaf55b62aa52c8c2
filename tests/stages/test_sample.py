"""The sample stage: provenance columns, per-trace seeds, resumable shards (SIGKILL and re-run)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from toolkit.config import ConfigError
from toolkit.generation.engine import LocalEngine
from toolkit.generation.roles import RoleConfig
from toolkit.schema import TRACE
from toolkit.sources import SourceConfig, load_problems
from toolkit.io import load
from toolkit.stages.sample import SampleConfig, sample, trace_seed


@pytest.fixture(scope="module")
def engine(tiny_model):
    return LocalEngine(tiny_model, batch_size=8)


def test_rows_carry_provenance_and_reproduce(engine, shared_data, tmp_path):
    cfg = SampleConfig(slm=RoleConfig("tiny-random"), problems=SourceConfig(source="svamp", limit=3), k=2,
                       max_new_tokens=8)
    problems = load_problems(cfg.problems)
    ds = sample(problems, cfg, engine)
    assert ds.features == TRACE and len(ds) == 6
    row = ds[1]
    assert row["trace_id"] == f"{row['problem_id']}#1" and row["sample_index"] == 1
    assert row["seed"] == trace_seed(0, row["problem_id"], 1)
    assert row["model_id"] == "qup/tiny-random-llama" and row["prompt_id"].startswith("math_cot@")
    assert json.loads(row["params"])["temperature"] == 0.8
    assert row["prompt"].endswith("<|im_start|>assistant\n") and row["variant"] == "self"
    assert row["completion_tokens"] == 8 and row["finish_reason"] == "length"
    again = sample(problems, cfg, engine)
    assert again["completion"] == ds["completion"]  # same seeds → same texts


def test_shards_resume_after_sigkill(engine, tiny_model, shared_data, tmp_path):
    out = tmp_path / "samples"
    cmd = [sys.executable, "-m", "toolkit.cli", "sample", "--model", tiny_model, "--source", "svamp",
           "--limit", "6", "--k", "2", "--max-new-tokens", "24", "--shard-size", "1",
           "--transformers-batch-size", "2", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shards = out / "shards"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(shards.glob("shard-*.parquet"))) < 2:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in shards.glob("shard-*.parquet")}
    assert 2 <= len(done) < 6, "the run should have been killed mid-way"
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for name, mtime in done.items():  # finished shards were not redone
        assert (shards / name).stat().st_mtime_ns == mtime
    ds = load(out)
    assert len(ds) == 12 and len(set(ds["trace_id"])) == 12
    # And the resumed data equals an uninterrupted run of the same command: same batching and the same
    # process (thread count changes float rounding, which can flip a near-tie draw of a random model).
    fresh_out = tmp_path / "fresh"
    subprocess.run(cmd[:-1] + [str(fresh_out)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fresh = load(fresh_out)
    assert fresh["completion"] == ds["completion"] and fresh["trace_id"] == ds["trace_id"]


def test_changed_settings_or_problems_redo_the_chunks(engine, shared_data, tmp_path, caplog):
    cfg = SampleConfig(slm=RoleConfig("tiny-random"), problems=SourceConfig(source="svamp", limit=2), k=1,
                       max_new_tokens=4)
    first = sample(load_problems(cfg.problems), cfg, engine, shard_dir=tmp_path)
    cfg2 = SampleConfig(slm=RoleConfig("tiny-random"), problems=SourceConfig(source="svamp", limit=2), k=1,
                        max_new_tokens=5)
    with caplog.at_level("WARNING", logger="toolkit.resume"):
        again = sample(load_problems(cfg2.problems), cfg2, engine, shard_dir=tmp_path)
    assert "other settings ['max_new_tokens']; removed, redoing" in caplog.text
    assert set(json.loads(p)["max_new_tokens"] for p in again["params"]) == {5} != {4} == \
        set(json.loads(p)["max_new_tokens"] for p in first["params"])
    other = SampleConfig(slm=RoleConfig("tiny-random"), problems=SourceConfig(source="svamp", limit=2, offset=2),
                         k=1, max_new_tokens=5)              # the same chunk index, other problems
    caplog.clear()
    with caplog.at_level("WARNING", logger="toolkit.resume"):
        third = sample(load_problems(other.problems), other, engine, shard_dir=tmp_path)
    assert "other input rows" in caplog.text
    assert third["problem_id"] == load_problems(other.problems)["id"] != again["problem_id"]


def test_bad_config_is_named():
    with pytest.raises(ConfigError, match="k must be >= 1"):
        SampleConfig(k=0)
    with pytest.raises(ConfigError, match="top_p"):
        SampleConfig(top_p=0)
