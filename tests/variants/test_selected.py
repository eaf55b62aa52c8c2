"""Compatibility-aware selection over a pool of scored variants: every registered criterion
(z(reward) − λ·z(NLL), GRAPE, RSR, IFD, Mix Distillation), its mode, its errors."""
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
    assert set(out["variant"]) == {"selected"} and set(out["mode"]) == {"oracle_refine|reward_nll|lambda=0"}


def test_a_large_lambda_keeps_what_the_learner_finds_natural():
    from collections import Counter
    counts = Counter()
    out = select(POOL, SelectConfig(pool=list(POOL), lam=5.0), counts)
    assert sorted(out["trace_id"]) == ["a#0", "b#0"] and set(out["mode"]) == {"rft|reward_nll|lambda=5"}
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
    with pytest.raises(ConfigError, match="variant 'rft' has no 'reward' column; run `qup score` on it "
                       r"first \(criterion reward_nll needs \['reward', 'nll'\]\)"):
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


def compat(variant, rows):
    """Rows with the compatibility columns: (problem, trace, mode, grape, rsr, ifd)."""
    from datasets import Features, Value
    feats = Features({**TRACE, **{c: Value("float32") for c in ("grape", "rsr", "ifd")}})
    out = [{**empty_trace(), "problem_id": pid, "trace_id": tid, "variant": variant, "mode": mode,
            "completion": f"{variant} {tid}", "question": f"q {pid}", "correct": True,
            "grape": g, "rsr": r, "ifd": i} for pid, tid, mode, g, r, i in rows]
    return Dataset.from_list(out, features=feats)


CPOOL = {"rft": compat("rft", [("a", "a#0", "", -0.5, 30.0, 0.90), ("b", "b#0", "", -0.9, 10.0, 0.97)]),
         "oracle_refine": compat("oracle_refine", [("a", "a#1", "refine", -0.7, 20.0, 0.95),
                                                   ("b", "b#1", "refine", -0.6, 40.0, 1.20),
                                                   ("c", "c#1", "refine", None, 5.0, 0.5)])}


@pytest.mark.parametrize("crit, want", [("grape", {"a#0", "b#1"}),     # highest mean log-prob
                                        ("rsr", {"a#1", "b#0", "c#1"}),  # lowest ratio
                                        ("ifd", {"a#1", "b#0", "c#1"})])  # highest below 1
def test_each_criterion_keeps_its_best_row_per_problem(crit, want):
    from collections import Counter
    counts = Counter()
    out = select(CPOOL, SelectConfig(pool=list(CPOOL), criterion=crit), counts)
    assert set(out["trace_id"]) == want
    assert all(m.endswith(f"|{crit}") and m.split("|")[0] in CPOOL for m in out["mode"])
    if crit == "grape":
        assert counts["unscored"] == 1          # c#1 has no GRAPE score: counted, left out
    if crit == "ifd":
        assert counts["ifd_not_below_1"] == 1   # b#1: the question does not help


def test_mix_keeps_oracle_and_slm_rows_at_one_to_four():
    own = compat("rft", [(f"p{i}", f"p{i}#0", "", -1.0, 1.0, 0.5) for i in range(8)])
    oracle = compat("oracle_synth", [(f"p{i}", f"p{i}#s", "synth", -1.0, 1.0, 0.5) for i in range(12)])
    out = select({"rft": own, "oracle_synth": oracle}, SelectConfig(criterion="mix", max_per_problem=1))
    kinds = [m.split("|")[0] for m in out["mode"]]
    assert kinds.count("rft") == 8 and kinds.count("oracle_synth") == 2     # 2:8 = 1:4
    assert len(set(out["problem_id"])) == 10   # Oracle rows went to problems the SLM did not cover
    assert all(m.endswith("|mix") for m in out["mode"])


def test_grape_picks_the_candidate_the_tiny_learner_finds_most_likely(tiny_model):
    """GRAPE's pick checked against transformers' own loss of each candidate."""
    from types import SimpleNamespace

    import torch
    from datasets import Features, Value

    from toolkit.diagnostics import compatibility as C
    from toolkit.diagnostics.adaptation_cost import sft_texts
    from toolkit.generation.engine import LocalEngine
    from toolkit.models import load_model
    from toolkit.prompts import load_prompt
    texts = {"rft": "2 + 2 = 4.\nThe answer is: 4", "oracle_synth": "We add two and two, giving four. 4",
             "style_aligned": "Two plus two: 2 + 2 = 4 so 4"}
    rows = {v: {**empty_trace(), "problem_id": "a", "trace_id": f"a#{i}", "variant": v, "question": "2+2?",
                "completion": t, "prompt_id": load_prompt("math_cot").id, "correct": True}
            for i, (v, t) in enumerate(texts.items())}
    got = C.score_rows(list(rows.values()), SimpleNamespace(learner=LocalEngine("tiny-random", dtype="float32")))
    feats = Features({**TRACE, **{c: Value("float32") for c in C.COLUMNS}})
    pool = {v: Dataset.from_list([{**r, **{c: got[c][i] for c in C.COLUMNS}}], features=feats)
            for i, (v, r) in enumerate(rows.items())}
    model, tok = load_model("tiny-random", dtype="float32")
    prompts, completions = sft_texts(Dataset.from_list(list(rows.values()), features=TRACE), tok)
    losses = {}
    for v, p, c in zip(rows, prompts, completions):
        head = len(tok(p, add_special_tokens=False)["input_ids"])
        ids = torch.tensor([tok(p + c, add_special_tokens=False)["input_ids"]])
        labels = ids.clone()
        labels[0, :head] = -100
        with torch.no_grad():
            losses[v] = model(input_ids=ids, labels=labels).loss.item()
    out = select(pool, SelectConfig(pool=list(pool), criterion="grape"))
    assert out["mode"] == [f"{min(losses, key=losses.get)}|grape"]
    assert len(set(losses.values())) == 3


@pytest.mark.parametrize("bad, msg", [({"criterion": "perplexity"}, "criterion 'perplexity' is not registered; "
                                       r"registered: \['grape', 'ifd', 'mix', 'reward_nll', 'rsr'\]"),
                                      ({"oracle_share": 1.0}, "oracle_share must be in")])
def test_unregistered_criterion_is_one_clear_error(bad, msg):
    with pytest.raises(ConfigError, match=msg):
        SelectConfig(**bad)


def test_a_pool_without_the_criterions_scores_names_the_field():
    with pytest.raises(ConfigError, match="variant 'rft' has no 'rsr' column.*criterion rsr needs"):
        select({"rft": POOL["rft"].remove_columns(["rsr"])}, SelectConfig(pool=["rft"], criterion="rsr"))


def test_rows_scored_without_a_criterions_value_are_counted_not_kept():
    from collections import Counter
    counts = Counter()
    out = select({"rft": POOL["rft"]}, SelectConfig(pool=["rft"], criterion="rsr"), counts)   # rsr all null
    assert len(out) == 0 and counts == {"unscored": 2} and "rsr" in out.column_names
