"""evaluate: the protocol recorded with every score; pass@k/maj@k from seeded samples; few-shot
plain-text prompts (lm-eval's GSM8K format); MATH-500; bad sampling settings as one clear error."""
import hashlib
import json
import subprocess
import sys

import pytest

from toolkit.config import ConfigError
from toolkit.io import load
from toolkit.passk import PassKError
from toolkit.prompts import load_prompt
from toolkit.protocol import DECISIVE, differences, protocol_id
from toolkit.publishing.cards import package_version
from toolkit.sources import SourceConfig
from toolkit.stages.evaluate import EvaluateConfig, evaluate_command, render_prompt


def test_metrics_carry_the_protocol(tiny_model, shared_data, tmp_path):
    m = evaluate_command(EvaluateConfig(model=tiny_model, problems=SourceConfig(source="svamp", limit=3),
                                        max_new_tokens=8, out=str(tmp_path / "e")))
    p = json.loads((tmp_path / "e" / "metrics.json").read_text())["protocol"]
    text = load_prompt("math_cot").text
    assert p["prompt_id"] == load_prompt("math_cot").id
    assert p["prompt_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert (p["shots"], p["chat_template"], p["sampling"], p["max_new_tokens"]) == (0, True, {"greedy": True}, 8)
    assert p["extraction"]["math_verify"] == package_version("math-verify") != "not installed"
    assert p["engine"].startswith("transformers ") and p["dtype"] in ("float32", "bfloat16")
    assert p["model"] and p["protocol_id"] == protocol_id(p) == m["protocol_id"]
    assert m["metric"] == "pass@1 (greedy)" and m["scores"]["pass@1"]["value"] == m["accuracy"]
    assert m["ci_low"] <= m["accuracy"] <= m["ci_high"]


def test_sampled_evaluation_gives_pass_at_k_and_maj_at_k(tiny_model, shared_data, tmp_path):
    cfg = dict(model=tiny_model, problems=SourceConfig(source="svamp", limit=3), max_new_tokens=6,
               temperature=1.0, top_p=0.95, n=3, k=[1, 3], seed=5)
    m = evaluate_command(EvaluateConfig(**cfg, out=str(tmp_path / "a")))
    rows = load(tmp_path / "a")
    assert len(rows) == 9 and sorted(rows["sample_index"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert len(set(rows["completion"])) > 3                     # samples, not one text repeated
    assert set(m["scores"]) == {"pass@1", "pass@3", "maj@3"}
    assert m["accuracy"] == pytest.approx(sum(rows["correct"]) / 9) == m["scores"]["pass@1"]["value"]
    assert m["metric"] == "pass@1 (n=3, T=1, top_p=0.95)" and m["problems"] == 3
    again = evaluate_command(EvaluateConfig(**cfg, out=str(tmp_path / "b")))
    assert load(tmp_path / "b")["completion"] == rows["completion"]   # seeded per (problem, sample)
    greedy = evaluate_command(EvaluateConfig(model=tiny_model, problems=cfg["problems"], max_new_tokens=6,
                                             out=str(tmp_path / "g")))
    assert differences(greedy["protocol"], again["protocol"]) == [
        'sampling: {"greedy": true} vs {"greedy": false, "n": 3, "seed": 5, "temperature": 1.0, "top_p": 0.95}']
    assert greedy["protocol_id"] != again["protocol_id"]


@pytest.mark.parametrize("kw,err,match", [
    (dict(temperature=0.7, n=2, k=[4]), PassKError, r"pass@4 needs at least 4 samples per problem, got n = 2"),
    (dict(temperature=0.7, n=2, k=[0]), PassKError, r"k must be an integer >= 1, got 0"),
    (dict(n=4), ConfigError, r"greedy decoding .* n must be 1, got 4"),
    (dict(shots=-1), ConfigError, r"shots must be >= 0"),
])
def test_bad_sampling_settings_are_one_clear_error(kw, err, match):
    with pytest.raises(err, match=match):
        EvaluateConfig(**kw)


def test_cli_names_n_below_k_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "toolkit.cli", "evaluate", "--source", "svamp", "--out",
                        str(tmp_path / "x"), "--temperature", "0.6", "--n", "2", "--k", "1", "--k", "4"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == \
        "qup: error: qup evaluate: pass@4 needs at least 4 samples per problem, got n = 2"


def test_few_shot_plain_text_prompt_is_lm_eval_gsm8k_format(tiny_model, shared_data, tmp_path):
    from toolkit.sources import load_problems
    shots = load_problems(SourceConfig(source="gsm8k", split="train", limit=2))
    prompt = render_prompt(load_prompt("question_answer"), "Q?", shots, False, None)
    first, second = shots[0], shots[1]
    assert prompt == (f"Question: {first['question']}\nAnswer: {first['gold_solution']}\n\n"
                      f"Question: {second['question']}\nAnswer: {second['gold_solution']}\n\nQuestion: Q?\nAnswer:")
    m = evaluate_command(EvaluateConfig(model=tiny_model, problems=SourceConfig(source="gsm8k", limit=2),
                                        prompt="question_answer", shots=2, chat_template=False,
                                        stop=["Question:"], max_new_tokens=12, out=str(tmp_path / "s")))
    p = m["protocol"]
    assert (p["shots"], p["shots_from"], p["chat_template"], p["stop"]) == (2, "gsm8k:train[:2]", False, ["Question:"])
    assert all("Question:" not in c for c in load(tmp_path / "s")["completion"])   # cut at the stop string
    assert set(DECISIVE) <= set(p)


def test_math500_is_graded_from_boxed_answers(tiny_model, shared_data, tmp_path):
    m = evaluate_command(EvaluateConfig(model=tiny_model, problems=SourceConfig(source="math500", limit=2),
                                        max_new_tokens=4, out=str(tmp_path / "m")))
    rows = load(tmp_path / "m")
    assert m["source"] == "math500" and len(rows) == 2 and m["unverifiable_gold"] == 0
    from toolkit.answers import grade
    assert grade("so $r = 3$ and the point is $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$.",
                 rows[0]["gold_answer"]) == ("\\left( 3, \\frac{\\pi}{2} \\right)", "correct")
