"""``qup train`` under ``torchrun --nproc_per_node 2`` on CPU (gloo): both ranks train on disjoint
halves of every epoch, rank 0 alone writes one adapter and ``qup_train.json``."""
from __future__ import annotations

import json
import os
import subprocess

from datasets import Dataset

from tests.conftest import VENV_BIN
from toolkit.schema import empty_trace

ROWS = 8


def traces() -> Dataset:
    rows = []
    for i in range(ROWS):
        row = empty_trace()
        row.update(trace_id=f"p{i}#0", problem_id=f"p{i}", question=f"What is {i} + {i + 1}?",
                   completion=f"{i} + {i + 1} = {2 * i + 1}. The answer is {2 * i + 1}.",
                   prompt_id="math_cot", variant="rft")
        rows.append(row)
    return Dataset.from_list(rows)


def test_ddp_two_processes_shard_the_data_and_save_one_adapter(tiny_model, tmp_path):
    data, out, seen = tmp_path / "data", tmp_path / "adapter", tmp_path / "seen"
    traces().save_to_disk(str(data))
    env = {**os.environ, "QUP_TRAIN_SEEN_LOG": str(seen), "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "toolkit.cli",
           "train", "--model", tiny_model, "--data", str(data), "--out", str(out), "--epochs", "2",
           "--batch-size", "2", "--max-length", "128", "--logging-steps", "1", "--lora-r", "4"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]

    # every example exactly once per epoch, split between the two ranks
    logs = {r: [json.loads(line) for line in (seen / f"seen-rank{r}.jsonl").read_text().splitlines()]
            for r in (0, 1)}
    assert sorted(os.listdir(seen)) == ["seen-rank0.jsonl", "seen-rank1.jsonl"]
    every = sorted(f"p{i}#0" for i in range(ROWS))
    for epoch in (0, 1):
        per_rank = {r: [e["trace_id"] for e in log if e["epoch"] == epoch] for r, log in logs.items()}
        assert len(per_rank[0]) == len(per_rank[1]) == ROWS // 2
        assert sorted(per_rank[0] + per_rank[1]) == every, (epoch, per_rank)
    assert {e["epoch"] for log in logs.values() for e in log} == {0, 1}

    # one adapter, written by rank 0, from a run of 2 processes
    summaries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"')]
    assert len(summaries) == 1                      # only rank 0 reports
    run = json.loads((out / "qup_train.json").read_text())
    metrics = run["metrics"]
    assert metrics["processes"] == 2 and metrics["steps"] == 2 * ROWS // (2 * 2)
    assert metrics["first_loss"] is not None and metrics["epochs"] == 2
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["adapter_model.safetensors"]
    assert not [p for p in out.rglob("*") if "rank" in p.name]   # nothing written per rank
    assert summaries[0]["adapter_sha256"] and summaries[0]["metrics"]["processes"] == 2
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] != str(tiny_model)


def test_qup_run_under_a_launcher_stops_before_any_work(tmp_path, monkeypatch, capsys):
    from toolkit.cli import main
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["run", "smoke", "--run-dir", str(tmp_path / "run")]) == 2
    assert "qup run is not rank-aware" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
