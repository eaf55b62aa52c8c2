"""``qup score``: every row scored through the CLI, resumable shards, clear errors."""
import json
import subprocess
import sys
from collections import Counter

import pyarrow.parquet as pq
import pytest
from datasets import Dataset

from toolkit.config import ConfigError
from toolkit.diagnostics.reward import RewardError
from toolkit.io import load, save
from toolkit.prompts import load_prompt
from toolkit.schema import TRACE, empty_trace
from toolkit.stages.score import ScoreConfig, Scorers, score, score_command

QUP = [sys.executable, "-m", "toolkit.cli"]


def traces(n=8, variant="self"):
    rows = []
    for i in range(n):
        pid = f"p{i // 2}"
        rows.append({**empty_trace(), "problem_id": pid, "trace_id": f"{pid}#{i % 2}", "variant": variant,
                     "question": f"What is {i} + 2?", "completion": f"{i} + 2 = {i + 2}.\nThe answer is: {i + 2}",
                     "completion_tokens": 12 + i, "prompt_id": load_prompt("math_cot").id, "correct": True})
    return Dataset.from_list(rows, features=TRACE)


def test_qup_score_with_a_reward_model_and_learner(tmp_path, tiny_model):
    save(traces(), tmp_path / "self")
    out = tmp_path / "scored"
    proc = subprocess.run(QUP + ["score", "--data", str(tmp_path / "self"), "--reference", str(tmp_path / "self"),
                                 "--learner-model", "tiny-random", "--reward", "classifier", "--reward-model",
                                 "tiny-random-rm", "--embedder", "", "--shard-size", "3", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tok_s=" in proc.stderr                                   # progress with a rate
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 8 and summary["reward_kind"] == "classifier"
    ds = load(out)
    assert set(ds["reward_kind"]) == {"classifier"} and set(ds["reward_model"]) == {"qup/tiny-random-rm@seed0"}
    assert None not in ds["reward"] and all(n > 0 for n in ds["nll"])
    assert ds["length_ratio"][0] == pytest.approx(12 / 13, abs=1e-3)  # vs the other trace of p0
    assert len(list((out / "shards").glob("shard-*.parquet"))) == 3


def test_a_killed_score_resumes_from_its_finished_shards(tmp_path, tiny_model):
    save(traces(), tmp_path / "self")
    cfg = ScoreConfig(data=str(tmp_path / "self"), out=str(tmp_path / "s"), learner="tiny-random",
                      reward="none", embedder="", shard_size=4)
    first = load(tmp_path / "s") if score_command(cfg) else None
    # As if killed after the first shard: the second is gone; mark the first to see it is reused.
    shard0, shard1 = (tmp_path / "s" / "shards" / f"shard-0000{i}.parquet" for i in (0, 1))
    shard1.unlink()
    t = pq.read_table(shard0).to_pylist()
    t[0]["nll"] = 123.0                                             # (keeping the shard's key)
    pq.write_table(Dataset.from_list(t).data.table.replace_schema_metadata(pq.read_schema(shard0).metadata),
                   shard0)
    again = load(tmp_path / "s") if score_command(cfg) else None
    assert again["nll"][0] == 123.0                                   # shard 0 reused, not recomputed
    assert again["nll"][4:] == pytest.approx(first["nll"][4:])       # shard 1 recomputed, same values


def test_identical_rows_are_scored_once(tiny_model):
    calls = Counter()
    scorers = Scorers.from_config(ScoreConfig(data="x", out="y", learner="tiny-random", reward="none"))
    real = scorers.learner.score

    def counting(prompts, completions, **kw):
        calls["rows"] += len(prompts)
        return real(prompts, completions, **kw)
    scorers.learner.score = counting
    a = score(traces(4), scorers)
    b = score(traces(4, variant="rft"), scorers)                      # the same texts: from the memo
    # 4 rows for NLL + 4 for IFD's question-free pass (RSR/GRAPE come from score_ranked), once
    assert calls["rows"] == 8 and a["nll"] == b["nll"] and a["ifd"] == b["ifd"]


def test_judge_that_never_says_yes_or_no(tmp_path, tiny_model):
    save(traces(), tmp_path / "self")
    cfg = ScoreConfig(data=str(tmp_path / "self"), out=str(tmp_path / "s"), judge="tiny-random", embedder="")
    with pytest.raises(RewardError, match=r"judge qup/tiny-random-llama@seed0 never says Yes/No: row 'p0#0' "
                                          r"field reward: P\(Yes\)\+P\(No\) = .* < min_verdict_mass 0.5"):
        score_command(cfg)


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ConfigError, match="reward=judge needs --judge"):
        ScoreConfig(data="x", out="y")
    with pytest.raises(ConfigError, match="reward must be one of"):
        ScoreConfig(data="x", out="y", reward="magic")
    save(traces().remove_columns(["prompt_id"]), tmp_path / "d")
    proc = subprocess.run(QUP + ["score", "--data", str(tmp_path / "d"), "--reward", "none", "--out",
                                 str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "lacks column(s) ['prompt_id']" in proc.stderr.strip().splitlines()[-1]


def _judged(data, out, judge):
    cfg = ScoreConfig(data=str(data), out=str(out), judge=judge, min_verdict_mass=0.0, embedder="",
                      shard_size=3)
    score_command(cfg)
    return load(out)[:]        # the columns now (the next run into `out` replaces its files)


def test_a_rerun_with_another_judge_rescores_every_row(tmp_path, tiny_model, caplog):
    save(traces(), tmp_path / "self")
    first = _judged(tmp_path / "self", tmp_path / "x", "tiny-random")
    with caplog.at_level("WARNING", logger="toolkit.resume"):
        again = _judged(tmp_path / "self", tmp_path / "x", "tiny-random-qwen2")   # the same --out
    fresh = _judged(tmp_path / "self", tmp_path / "clean", "tiny-random-qwen2")
    assert set(again["reward_model"]) == set(fresh["reward_model"]) != set(first["reward_model"])
    assert again["reward"] == pytest.approx(fresh["reward"]) and again["reward"] != first["reward"]
    assert caplog.text.count("other settings ['reward']; removed, redoing") == 3   # every shard


def test_a_rerun_with_other_data_into_the_same_out_scores_that_data(tmp_path, tiny_model):
    save(traces(), tmp_path / "a")
    other = traces(5).map(lambda r: {"trace_id": "q" + r["trace_id"], "completion": r["completion"] + " ok"})
    save(other, tmp_path / "b")
    _judged(tmp_path / "a", tmp_path / "x", "tiny-random")
    again = _judged(tmp_path / "b", tmp_path / "x", "tiny-random")               # once a KeyError
    fresh = _judged(tmp_path / "b", tmp_path / "clean", "tiny-random")
    assert again["trace_id"] == other["trace_id"] and again["reward"] == pytest.approx(fresh["reward"])
    assert sorted(p.name for p in (tmp_path / "x" / "shards").iterdir()) == [
        "shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]     # a's third shard stays
