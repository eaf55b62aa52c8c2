"""rft: only verified-correct, complete traces, exact and near duplicates dropped, capped per problem."""
from collections import Counter

import pytest
from datasets import Dataset

from toolkit.config import ConfigError
from toolkit.schema import TRACE, empty_trace
from toolkit.variants.rft import RftConfig, rft
from toolkit.stages.verify import summary, verify

BASE = "Tom has 3 apples and buys 4 more. 3 + 4 = 7. The answer is: 7"


def traces(completions_by_problem: dict[str, list[str]], gold="7") -> Dataset:
    rows = []
    for pid, completions in completions_by_problem.items():
        for i, c in enumerate(completions):
            row = empty_trace()
            row.update(id=pid, problem_id=pid, trace_id=f"{pid}#{i}", sample_index=i, completion=c,
                       gold_answer=gold, question="q", variant="self")
            rows.append(row)
    return Dataset.from_list(rows, features=TRACE)


def test_keeps_only_correct_and_deduplicates():
    ds = traces({"p1": [BASE,
                        BASE.replace(" ", "  "),                       # exact dup up to spaces
                        BASE.replace("Tom", "Tim"),                    # near dup
                        "First 3 apples, then 4 more gives 7 in all. The answer is: 7",  # distinct
                        "3 + 4 = 8. The answer is: 8",                 # wrong
                        "I am not sure."],                             # no answer → wrong
                 "p2": ["The answer is: 7"]})
    out = rft(ds, RftConfig(max_per_problem=4, near_dup_threshold=0.6))
    assert out["trace_id"] == ["p1#0", "p1#3", "p2#0"]
    assert set(out["variant"]) == {"rft"} and out["parent_id"] == out["trace_id"]
    assert all(out["correct"])


def test_a_trace_cut_at_the_token_limit_is_not_kept_even_when_it_grades_correct():
    cut = "Tom has 3 apples. 3 + 4 = 7. Now we need to find the total of 3 and 4, which is 7"
    ds = verify(traces({"p1": [cut, BASE], "p2": [cut]}))
    ds = ds.map(lambda r: {"finish_reason": "length" if r["completion"] == cut else "eos_token"})
    assert ds["correct"] == [True, True, True]                 # the grader's last-number fallback
    counts = Counter()
    out = rft(ds, RftConfig(), counts)
    assert out["trace_id"] == ["p1#1"] and counts == {"cut_at_token_limit": 2}


def test_cap_per_problem_and_threshold_one_keeps_near_dups():
    ds = traces({"p1": [BASE, BASE.replace("Tom", "Tim"), BASE.replace("Tom", "Ann")]})
    assert len(rft(ds, RftConfig(max_per_problem=2, near_dup_threshold=1.0))) == 2
    assert len(rft(ds, RftConfig(max_per_problem=8, near_dup_threshold=1.0))) == 3


def test_unverifiable_gold_is_never_correct():
    ds = verify(traces({"p1": ["The answer is: 7"]}, gold=r"\frac{"))
    assert ds["verify_status"] == ["unverifiable_gold"] and ds["correct"] == [False]
    assert len(rft(ds, RftConfig())) == 0
    assert summary(ds)["verify_status"] == {"unverifiable_gold": 1}


def test_config_is_validated():
    with pytest.raises(ConfigError, match="max_per_problem"):
        RftConfig(max_per_problem=0)


def test_verify_and_rft_commands(tmp_path, capsys):
    import json

    from toolkit.cli import main
    from toolkit.io import load, save
    save(traces({"p1": [BASE, "The answer is: 8"], "p2": ["The answer is: 7"]}), tmp_path / "samples")
    assert main(["verify", "--traces", str(tmp_path / "samples"), "--out", str(tmp_path / "self")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["rows"], summary["correct"], summary["problems_solved"]) == (3, 2, 2)
    assert main(["rft", "--traces", str(tmp_path / "self"), "--out", str(tmp_path / "rft"),
                 "--max-per-problem", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 2
    assert load(tmp_path / "rft")["trace_id"] == ["p1#0", "p2#0"]
    assert main(["rft", "--traces", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "no dataset at" in capsys.readouterr().err
