"""Learner–data compatibility: published per-row criteria, as pure functions over the learner's
token log-probabilities and ranks of a completion (one forward pass of the learner, SFT's loss
tokens; see :mod:`toolkit.diagnostics.adaptation_cost`).

- **RSR**, the Rank-Surprisal Ratio (Yang et al., "Which Reasoning Trajectories Teach Students to
  Reason Better?", arXiv 2601.14249, 2026): ``Σ min(rank_t, 100) / Σ −log p_t`` over the
  trajectory's tokens, i.e. mean clipped token rank / mean NLL. A token's rank is 1-based (1 = the
  learner's most likely token: 1 + the number of vocabulary logits strictly above it) and clipped
  at 100, as in the authors' code (``rank_clip_r=100``). **Lower is better**: informative (high
  NLL) yet aligned (low rank). A set's RSR is Σ mean-rank / Σ mean-NLL over its rows (the paper's
  surprisal-weighted average, App. A.8): :func:`rsr_of_set`.
- **IFD**, Instruction-Following Difficulty (Li et al., Cherry LLM, arXiv 2308.12032):
  ``loss(answer | question) / loss(answer)``, each a mean token NLL of the same answer tokens; the
  question-free loss scores the answer after the chat template with an empty user turn
  (:func:`answer_only_prompt`). Cherry LLM keeps the **highest** IFD (the hardest rows: the
  question helps least), the opposite direction to GRAPE.
- **GRAPE** (Zhang, Dai, Peng, "The Best Instruction-Tuning Data are Those That Fit", arXiv
  2502.04194): the length-normalised log-probability of the response under the learner, the mean
  token log-probability; per problem GRAPE keeps the candidate with the **highest** value.

Example:
    >>> rsr([1, 3, 250], [0.1, 0.5, 3.0])          # ranks clipped at 100: (1 + 3 + 100) / 3.6
    28.889
    >>> ifd([-1.0, -3.0], [-2.0, -6.0])             # mean NLL 2.0 given the question, 4.0 without
    0.5
    >>> grape([-1.0, -3.0])
    -2.0
"""
from __future__ import annotations

import math
from typing import Sequence

from ..generation.base import token_ranks  # noqa: F401 (the engine computes ranks in its scoring pass)

RANK_CLIP = 100        # Yang et al.'s rank_clip_r
COLUMNS = ("rsr", "ifd", "grape")


def rsr(ranks: Sequence[int], nlls: Sequence[float], clip: int = RANK_CLIP) -> float | None:
    """Rank-Surprisal Ratio of one trajectory: Σ min(rank, clip) / Σ NLL (module doc); None when
    empty or when every token has zero surprisal."""
    if len(ranks) != len(nlls):
        raise ValueError(f"rsr: {len(ranks)} ranks vs {len(nlls)} NLLs")
    total = math.fsum(nlls)
    if not ranks or total <= 0:
        return None
    return round(sum(min(int(r), clip) for r in ranks) / total, 3)


def rsr_of_set(mean_ranks: Sequence[float], mean_nlls: Sequence[float]) -> float | None:
    """RSR of a set of trajectories: Σ mean clipped rank / Σ mean NLL over rows (Yang et al.,
    App. A.8), i.e. the rows' RSRs weighted by their surprisal."""
    pairs = [(r, n) for r, n in zip(mean_ranks, mean_nlls) if r is not None and n is not None]
    total = math.fsum(n for _, n in pairs)
    return math.fsum(r for r, _ in pairs) / total if pairs and total > 0 else None


def mean_nll(logprobs: Sequence[float]) -> float | None:
    return -math.fsum(logprobs) / len(logprobs) if logprobs else None


def grape(logprobs: Sequence[float]) -> float | None:
    """GRAPE's length-normalised log-probability: the mean token log-probability (higher fits)."""
    return math.fsum(logprobs) / len(logprobs) if logprobs else None


def ifd(with_question: Sequence[float], without_question: Sequence[float]) -> float | None:
    """Cherry LLM's IFD: mean NLL of the answer given the question / mean NLL of the answer alone
    (token log-probabilities of the same answer tokens); None when the latter is zero or missing."""
    cond, alone = mean_nll(with_question), mean_nll(without_question)
    if cond is None or not alone:
        return None
    return cond / alone


def answer_only_prompt(tokenizer) -> str:
    """The prompt of IFD's question-free loss: the chat template with an empty user turn, up to
    the assistant's turn (templates refuse an empty conversation; a default system prompt stays)."""
    return tokenizer.apply_chat_template([{"role": "user", "content": ""}], tokenize=False,
                                         add_generation_prompt=True)


def from_tokens(logprobs: Sequence[float], ranks: Sequence[int] | None,
                alone: Sequence[float] | None) -> dict:
    """The three columns of one row from its scored tokens (``ranks``/``alone`` None: not
    available from this engine, the column stays null)."""
    nlls = [-x for x in logprobs]
    return {"rsr": rsr(ranks, nlls) if ranks is not None and logprobs else None,
            "ifd": ifd(logprobs, alone) if alone is not None else None,
            "grape": grape(logprobs)}


def score_rows(rows: list[dict], models) -> dict[str, list]:
    """The ``rsr``/``ifd``/``grape`` columns of ``rows`` under ``models.learner`` (a Generator):
    SFT's loss tokens scored with their ranks (``score_ranked``; an engine without it, such as a
    TGI endpoint, leaves ``rsr`` null), and once more after a question-free prompt for IFD."""
    from datasets import Dataset

    from .adaptation_cost import sft_texts
    learner = models.learner
    keep = ("question", "completion", "prompt_id", "trace_id")
    prompts, completions = sft_texts(Dataset.from_list([{k: r[k] for k in keep} for r in rows]),
                                     learner.tokenizer)
    ranked = getattr(learner, "score_ranked", None)
    if ranked is not None:
        lps, ranks = map(list, zip(*ranked(prompts, completions))) if rows else ([], [])
    else:
        lps, ranks = learner.score(prompts, completions), [None] * len(rows)
    alone = learner.score([answer_only_prompt(learner.tokenizer)] * len(rows), completions)
    found = [from_tokens(lp, rk, al) for lp, rk, al in zip(lps, ranks, alone)]
    return {c: [f[c] for f in found] for c in COLUMNS}
