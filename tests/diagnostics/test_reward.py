"""Perceived quality: a reward model's score, and a judge's P("Yes") locally and through TGI."""
import pytest

from toolkit.diagnostics.reward import Judge, RewardError, RewardModel
from toolkit.generation import make_generator
from toolkit.generation.engine import LocalEngine
from toolkit.serve import TGIServer

QUESTIONS = ["What is 2 + 3?", "Sam had 7 pens and gave away 4. How many are left?", "What is 6 * 7?"]
GOOD = ["2 + 3 = 5.\nThe answer is: 5", "7 - 4 = 3.\nThe answer is: 3", "6 * 7 = 42.\nThe answer is: 42"]
BAD = ["2 + 3 = 6.\nThe answer is: 6", "7 + 4 = 11.\nThe answer is: 11", "6 * 7 = 48.\nThe answer is: 48"]


def test_judge_on_a_tiny_model_gives_probabilities(tiny_model):
    judge = Judge(LocalEngine(tiny_model, batch_size=2, dtype="float32"))
    out = judge(QUESTIONS, GOOD)
    assert len(out) == 3
    for p, mass in out:
        assert 0 <= p <= 1 and 0 < mass <= 1
    assert len({round(p, 6) for p, _ in out}) > 1        # it reads each row, not a constant
    assert judge.model_id == "qup/tiny-random-llama@seed0"


def test_judge_through_tgi_equals_local(tiny_model):
    """Endpoints have no one-pass next-token call: the judge reads prefill logprobs of Yes and No."""
    local = Judge(LocalEngine(tiny_model, batch_size=3, dtype="float32"))(QUESTIONS, BAD)
    with TGIServer(tiny_model, dtype="float32") as server:
        gen = make_generator(tiny_model, backend="endpoint", endpoints=[server.url])
        assert not hasattr(gen, "next_token_logprobs")
        remote = Judge(gen)(QUESTIONS, BAD)
    for (p, m), (q, n) in zip(local, remote):
        assert p == pytest.approx(q, abs=1e-4) and m == pytest.approx(n, rel=1e-3)


def test_reward_model_scores_each_row(tmp_path):
    rm = RewardModel("tiny-random-rm", batch_size=2, dtype="float32")
    scores = rm(QUESTIONS, GOOD)
    assert len(scores) == 3 and len(set(scores)) == 3
    assert RewardModel("tiny-random-rm", batch_size=1, dtype="float32")(QUESTIONS, GOOD) == pytest.approx(scores, abs=1e-5)


def test_reward_model_with_more_than_one_label_is_refused(tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from toolkit.models import load_tokenizer
    config = AutoConfig.for_model("llama", vocab_size=49152, hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                  num_labels=3)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "rm3")
    load_tokenizer("tiny-random").save_pretrained(tmp_path / "rm3")
    with pytest.raises(RewardError, match=r"reward model '.*rm3': its head has 3 labels; a reward model has one"):
        RewardModel(str(tmp_path / "rm3"))


@pytest.mark.slow
def test_real_judge_prefers_correct_solutions():
    """Qwen2.5-Coder-1.5B as judge answers Yes or No and, on average, says Yes more often to the
    right solutions. (A weak judge: measured on these rows, the 0.5B Oracle does not separate them
    at all, and the 1.5B misses 2 + 3 = 6; see the README.)"""
    judge = Judge(LocalEngine("qwen2.5-coder-1.5b-instruct", batch_size=6, dtype="float32"))
    good, bad = judge(QUESTIONS, GOOD), judge(QUESTIONS, BAD)
    assert all(m > 0.9 for _, m in good + bad), (good, bad)   # it answers Yes or No
    mean = lambda rows: sum(p for p, _ in rows) / len(rows)  # noqa: E731
    assert mean(good) > mean(bad) + 0.05, (good, bad)
