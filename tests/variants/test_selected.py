"""Compatibility-aware selection: z(reward) − λ·z(NLL) over a pool of scored variants."""
import json
import subprocess
import sys

import pytest
from datasets import Dataset

from toolkit.config import ConfigError
from toolkit.io import load, save
from toolkit.schema import TRACE, empty_trace
from toolkit.variants.selected import SelectConfig, select


def scored(variant, rows):
    out = []
    for pid, tid, reward, nll, correct in rows:
        out.append({**empty_trace(), "problem_id": pid, "trace_id": tid, "variant": variant,
                    "completion": f"{variant} {tid}", "reward": reward, "nll": nll, "correct": correct,
                    "question": f"q {pid}", "verify_status": "correct" if correct else "wrong"})
    return Dataset.from_list(out, features=TRACE)


POOL = {
    # rows: (problem, trace, reward, nll, correct)
    "rft": scored("rft", [("a", "a#0", 0.2, 0.5, True), ("b", "b#0", 0.3, 0.6, True)]),
    "oracle_refine": scored("oracle_refine", [("a", "a#1", 0.9, 2.0, True), ("b", "b#1", 0.8, 2.2, True),
                                              ("c", "c#1", None, 1.0, True), ("d", "d#1", 0.95, 1.9, False)]),
}


def test_lambda_zero_keeps_the_highest_reward_rows():
    out = select(POOL, SelectConfig(pool=list(POOL), lam=0.0))
    assert {(r["problem_id"], r["trace_id"]) for r in out} == {("a", "a#1"), ("b", "b#1")}
    assert set(out["variant"]) == {"selected"} and set(out["mode"]) == {"oracle_refine|lambda=0"}


def test_a_large_lambda_keeps_what_the_learner_finds_natural():
    from collections import Counter
    counts = Counter()
    out = select(POOL, SelectConfig(pool=list(POOL), lam=5.0), counts)
    assert sorted(out["trace_id"]) == ["a#0", "b#0"] and set(out["mode"]) == {"rft|lambda=5"}
    assert counts == {"unscored": 1, "not_correct": 1}       # counted, never silently dropped


def test_cap_per_problem_and_duplicates_across_variants():
    twin = scored("style_aligned", [("a", "a#0", 0.2, 0.5, True)]).map(
        lambda r: {"completion": "rft a#0"})                     # a pass-through copy of rft's row
    from collections import Counter
    counts = Counter()
    out = select({**POOL, "style_aligned": twin}, SelectConfig(lam=1.0, max_per_problem=2), counts)
    assert counts["duplicate"] == 1
    assert sorted(out["problem_id"]) == ["a", "a", "b", "b"]


@pytest.mark.parametrize("bad, msg", [({"lam": -1}, "lam must be"), ({"lam": float("nan")}, "lam must be"),
                                      ({"pool": []}, "pool must name"), ({"max_per_problem": 0}, "max_per_problem")])
def test_bad_options(bad, msg):
    with pytest.raises(ConfigError, match=msg):
        SelectConfig(**bad)


def test_unscored_pool_is_a_clear_error():
    with pytest.raises(ConfigError, match="variant 'rft' has no 'reward' column; run `qup score`"):
        select({"rft": POOL["rft"].remove_columns(["reward"])}, SelectConfig(pool=["rft"]))


def test_qup_select_cli(tmp_path):
    for name, ds in POOL.items():
        save(ds, tmp_path / name)
    cmd = [sys.executable, "-m", "toolkit.cli", "select", "--data", f"rft={tmp_path / 'rft'}",
           "--data", str(tmp_path / "oracle_refine"), "--lam", "0", "--out", str(tmp_path / "sel")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["pool"] == ["rft", "oracle_refine"] and summary["rows"] == 2 and summary["lam"] == 0
    assert sorted(load(tmp_path / "sel")["trace_id"]) == ["a#1", "b#1"]
    bad = subprocess.run(cmd[:-2] + ["--pool", "x", "--out", str(tmp_path / "s2")], capture_output=True, text=True)
    assert bad.returncode == 2 and "do not pass --pool" in bad.stderr
