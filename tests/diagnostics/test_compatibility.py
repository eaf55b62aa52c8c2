"""RSR, IFD and GRAPE per row, each checked against a direct computation from transformers
logits and losses of the tiny random model."""
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset

from toolkit.diagnostics import compatibility as C
from toolkit.diagnostics.adaptation_cost import sft_texts
from toolkit.generation.engine import LocalEngine
from toolkit.models import load_model
from toolkit.prompts import load_prompt
from toolkit.schema import TRACE, empty_trace


def rows():
    out = []
    for i, text in enumerate(["3 + 4 = 7.\nThe answer is: 7", "Six apples minus two is 4 apples. 4",
                              "The answer is: 12"]):
        out.append({**empty_trace(), "problem_id": f"p{i}", "trace_id": f"p{i}#0", "question": f"Q{i}: what?",
                    "completion": text, "prompt_id": load_prompt("math_cot").id, "correct": True})
    return out


@pytest.fixture(scope="module")
def engine(tiny_model):
    return LocalEngine("tiny-random", batch_size=2, dtype="float32")


def _by_hand(model, tok, prompt: str, completion: str):
    """Per completion token: log p, 1-based rank and the logits row, from one plain forward pass."""
    head = tok(prompt, add_special_tokens=False)["input_ids"]
    ids = tok(prompt + completion, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    lps, ranks = [], []
    for j in range(len(head), len(ids)):
        row = logits[j - 1]
        lps.append(torch.log_softmax(row, -1)[ids[j]].item())
        ranks.append(int((row > row[ids[j]]).sum().item()) + 1)
    return lps, ranks


def _loss(model, tok, prompt: str, completion: str) -> float:
    """transformers' own causal-LM loss on the completion tokens (prompt labels masked)."""
    head = tok(prompt, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([tok(prompt + completion, add_special_tokens=False)["input_ids"]])
    labels = ids.clone()
    labels[0, :len(head)] = -100
    with torch.no_grad():
        return model(input_ids=ids, labels=labels).loss.item()


def test_rsr_ifd_grape_match_a_direct_computation(engine):
    model, tok = load_model("tiny-random", dtype="float32")
    rs = rows()
    prompts, completions = sft_texts(Dataset.from_list(rs, features=TRACE), tok)
    got = C.score_rows(rs, SimpleNamespace(learner=engine))
    for i, (p, c) in enumerate(zip(prompts, completions)):
        lps, ranks = _by_hand(model, tok, p, c)
        nlls = [-x for x in lps]
        assert got["rsr"][i] == pytest.approx(sum(min(r, 100) for r in ranks) / sum(nlls), rel=1e-3)
        with_q = _loss(model, tok, p, c)
        alone = _loss(model, tok, C.answer_only_prompt(tok), c)
        assert got["ifd"][i] == pytest.approx(with_q / alone, rel=1e-4)
        assert got["grape"][i] == pytest.approx(-with_q, rel=1e-4)
        assert abs(with_q - alone) > 1e-3       # the two losses differ: IFD is not 1 by construction


def test_engine_ranks_are_the_exact_unclipped_ranks(engine):
    model, tok = load_model("tiny-random", dtype="float32")
    prompts, completions = sft_texts(Dataset.from_list(rows(), features=TRACE), tok)
    for (lps, ranks), p, c in zip(engine.score_ranked(prompts, completions), prompts, completions):
        want_lps, want_ranks = _by_hand(model, tok, p, c)
        assert ranks == want_ranks and len(set(ranks)) > 1
        assert lps == pytest.approx(want_lps, abs=1e-4)
    assert engine.score(prompts, completions)[0] == pytest.approx(engine.score_ranked(prompts, completions)[0][0])


def test_rank_is_one_based_with_ties_sharing_the_better_rank():
    logits = torch.tensor([[0.1, 2.0, 2.0, -1.0], [5.0, 1.0, 1.0, 0.0]])
    assert C.token_ranks(logits, torch.tensor([2, 3])).tolist() == [1, 4]


def test_rsr_clips_ranks_at_100_and_sets_weight_by_surprisal():
    assert C.rsr([1, 500], [1.0, 1.0]) == pytest.approx(101 / 2)
    assert C.rsr([], []) is None and C.rsr([3], [0.0]) is None
    # two rows: RSR 10 (mean NLL 1) and 1 (mean NLL 9): Σ mean rank / Σ mean NLL = (10 + 9) / 10
    assert C.rsr_of_set([10.0, 9.0], [1.0, 9.0]) == pytest.approx(1.9)
    with pytest.raises(ValueError, match="2 ranks vs 1"):
        C.rsr([1, 2], [0.5])


def test_an_engine_without_ranks_leaves_rsr_null(engine):
    class NoRanks:                    # a TGI endpoint: scores, no ranks
        tokenizer = engine.tokenizer
        score = engine.score
    got = C.score_rows(rows()[:2], SimpleNamespace(learner=NoRanks()))
    assert got["rsr"] == [None, None] and None not in got["ifd"] and None not in got["grape"]


def test_qup_score_fills_the_columns_once_per_distinct_row(engine):
    """Through the registry (toolkit.diagnostics.columns): beside NLL, each distinct text scored once."""
    from toolkit.stages.score import Scorers, score
    rs = rows()
    twin = {**rs[0], "trace_id": "p0#1"}           # the same text again (e.g. rft and self)
    ds = Dataset.from_list([*rs, twin], features=TRACE)
    calls = []
    real = engine.score_ranked
    engine.score_ranked = lambda p, c, *a, **k: calls.append(len(p)) or real(p, c, *a, **k)
    try:
        out = score(ds, Scorers(learner=engine))
    finally:
        del engine.score_ranked
    want = C.score_rows(rs, SimpleNamespace(learner=engine))
    assert out["rsr"][:3] == pytest.approx(want["rsr"], rel=1e-3) and out["rsr"][3] == out["rsr"][0]
    assert out["grape"] == pytest.approx([-n for n in out["nll"]], rel=1e-5)
    assert out["ifd"][:3] == pytest.approx(want["ifd"], rel=1e-4) and sum(calls) == 3
