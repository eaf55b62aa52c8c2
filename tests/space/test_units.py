"""Settings, limits and the paradox plot: pure functions of the Space."""
from __future__ import annotations

import pytest

from toolkit.errors import QupError
from toolkit.space.leaderboard import Row
from toolkit.space.plots import paradox_plot
from toolkit.space.settings import (LimitError, SpaceSettings, check_models, check_question,
                                    clamp_new_tokens)


def test_settings_from_env_and_what_the_page_may_show():
    s = SpaceSettings.from_env({"HF_ENDPOINT": "http://127.0.0.1:1", "HF_TOKEN": "hf_secretsecret",
                                "QUP_SPACE_BACKEND": "tgi", "QUP_SPACE_TGI_URL": "http://10.0.0.9:8080",
                                "QUP_SPACE_TGI_TOKEN": "tgi-secret", "QUP_SPACE_MAX_NEW_TOKENS": "64"})
    assert (s.backend, s.max_new_tokens, s.max_chars) == ("tgi", 64, 1000)
    shown = str(s.public())
    assert "hf_secretsecret" not in shown and "10.0.0.9" not in shown and "tgi-secret" not in shown
    for env, msg in (({"QUP_SPACE_MAX_CHARS": "lots"}, "QUP_SPACE_MAX_CHARS must be an integer"),
                     ({"QUP_SPACE_QUEUE": "0"}, "QUP_SPACE_QUEUE must be >= 1"),
                     ({"QUP_SPACE_BACKEND": "vllm"}, "QUP_SPACE_BACKEND must be"),
                     ({"QUP_SPACE_BACKEND": "tgi"}, "needs QUP_SPACE_TGI_URL")):
        with pytest.raises(QupError, match=msg):
            SpaceSettings.from_env(env)


def test_limits_say_what_is_wrong():
    s = SpaceSettings(max_chars=20, max_new_tokens=64)
    assert check_question("  How much is 2+2? ", s) == "How much is 2+2?"
    with pytest.raises(LimitError, match="at most 20"):
        check_question("x" * 21, s)
    with pytest.raises(LimitError, match="Type a question"):
        check_question("   ", s)
    assert clamp_new_tokens(64, s) == 64 and clamp_new_tokens("16", s) == 16
    for bad in (65, 0, "many"):
        with pytest.raises(LimitError, match="max_new_tokens"):
            clamp_new_tokens(bad, s)
    assert check_models(["base", "rft", "rft"]) == ["base", "rft"]
    for bad in (["base"], None, ["a", "b", "c", "d", "e"]):
        with pytest.raises(LimitError, match="between 2 and 4"):
            check_models(bad)


def test_paradox_plot_points_and_empty_states():
    rows = [Row("base", "mawps", 0.1, 2, 20, 0.03, 0.3),
            Row("rft", "mawps", 0.15, 3, 20, 0.05, 0.36, 1, 0.7, (0.6, 0.8), 0.6, (0.5, 0.7)),
            Row("oracle_refine", "mawps", 0.05, 1, 20, 0.01, 0.24, 1, 0.9, None, 1.2, None)]
    fig, note = paradox_plot(rows)
    assert note == "" and len(fig.axes) == 2
    reward_ax, nll_ax = fig.axes
    assert "reward" in reward_ax.get_xlabel() and "NLL" in nll_ax.get_xlabel()
    xs = sorted(float(c.lines[0].get_xdata()[0]) for c in reward_ax.containers)   # errorbar points
    assert xs == pytest.approx([0.7, 0.9])                       # one point per variant, base excluded
    assert any(line.get_linestyle() == "--" for line in reward_ax.lines)   # the base model as a line
    fig, note = paradox_plot([Row("rft", "mawps", 0.15, nll=0.6)])
    assert len(fig.axes) == 1 and note == "No training reward published for these variants."
    fig, note = paradox_plot([Row("base"), Row("rft", reward=0.7)])
    assert fig is None and note.startswith("Nothing to plot yet")


def test_card_evals_keep_a_well_formed_metric_and_protocol_only():
    from toolkit.space.discovery import _eval
    good = _eval({"dataset": "gsm8k", "accuracy": 0.5, "metric": "pass@1 (n=4, T=0.6, top_p=0.95)",
                  "protocol_id": "0a1b2c3d4e5f"})
    assert (good["metric"], good["protocol_id"]) == ("pass@1 (n=4, T=0.6, top_p=0.95)", "0a1b2c3d4e5f")
    bad = _eval({"dataset": "gsm8k", "accuracy": 0.5, "metric": "pass@1 <img src=x onerror=alert(1)>",
                 "protocol_id": "a b"})
    assert "metric" not in bad and "protocol_id" not in bad


def test_configs_warn_when_protocols_differ_and_details_mark_answers():
    from toolkit.space.protocols import configs, details
    rows = [{"variant": "base", "seed": -1, "benchmark": "gsm8k", "protocol_id": "a", "metric": "pass@1 (greedy)",
             "protocol": '{"shots": 0, "sampling": {"greedy": true}}'},
            {"variant": "rft", "seed": 0, "benchmark": "gsm8k", "protocol_id": "b", "metric": "pass@1 (greedy)",
             "protocol": '{"shots": 5, "sampling": {"greedy": true}}'}]
    headers, table, warning = configs(rows, ["base", "rft · seed 0"])
    assert headers == ["field", "base", "rft · seed 0"] and ["shots", "0", "5"] in table
    assert warning.startswith("⚠ The protocols differ (shots: 0 vs 5)")
    out = [{"variant": v, "seed": s, "benchmark": "gsm8k", "protocol_id": p, "problem_id": f"gsm8k/test/{i}",
            "sample_index": 0, "question": f"q{i}", "gold_answer": "1", "answer": a, "correct": a == "1",
            "completion": f"... {a}"} for v, s, p, a in (("base", -1, "a", "1"), ("rft", 0, "b", "2"))
           for i in range(3)]
    table, note = details(out, "base", "rft · seed 0", "gsm8k")
    assert [row[4] for row in table] == ["✓"] * 3 and [row[6] for row in table] == ["✗"] * 3
    assert "they differ on 3" in note and "Different protocols (a vs b)" in note
