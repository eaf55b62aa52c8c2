"""Decontamination: training problems that overlap an evaluation problem are dropped before any
model runs, and counted.

MAWPS, SVAMP and ASDiv share problems (SVAMP was built from ASDiv-A; ASDiv re-collects MAWPS):
measured on ``../shared/data``, 1,000 of MAWPS's 2,065 problems share a word 8-gram with ASDiv,
487 of SVAMP's 1,000 with ASDiv, and 94 GSM8K train problems with GSM8K test. **Method**: a
problem's text is lower-cased and split into words of letters and digits; a training problem is
contaminated when it shares any word 8-gram with any evaluation problem (a problem shorter than
8 words: its whole word sequence). The count and the method land in ``run.json``, the dataset
card and the report; a training slice that overlaps completely is one clear error.

Example:
    >>> overlap(["Tom has 3 red apples and eats 1 of them today. How many are left?"],
    ...         {"svamp": ["Tom has 3 red apples and eats 1 of them today. How many remain?"]})
    {0: ['svamp']}
"""
from __future__ import annotations

import re
from typing import Sequence

from .errors import QupError

N = 8
METHOD = (f"word {N}-gram overlap: lower-cased words of letters and digits; a training problem "
          f"sharing any {N}-gram with an evaluation problem is dropped (under {N} words: its whole text)")
_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")


class ContaminationError(QupError, ValueError):
    """Training and evaluation problems overlap completely."""


def ngrams(text: str, n: int = N) -> set[tuple[str, ...]]:
    """The word ``n``-grams of ``text`` (see module doc)."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def overlap(train: Sequence[str], evals: dict[str, Sequence[str]], n: int = N) -> dict[int, list[str]]:
    """{index of a training question: names of the evaluation sets it overlaps}."""
    index: dict[tuple, set[str]] = {}
    for name, questions in evals.items():
        for q in questions:
            for g in ngrams(q, n):
                index.setdefault(g, set()).add(name)
    out = {}
    for i, q in enumerate(train):
        hit = set().union(*(index.get(g, set()) for g in ngrams(q, n)))
        if hit:
            out[i] = sorted(hit)
    return out


def check(train, evals: dict, where: str = "recipe") -> dict:
    """Which training problems (a PROBLEM Dataset) overlap the evaluation sets ({name: PROBLEM
    Dataset}): ``{"method", "checked", "dropped", "by_benchmark", "exclude": [problem ids]}``.

    Raises :class:`ContaminationError` when every training problem overlaps."""
    found = overlap(train["question"], {k: ds["question"] for k, ds in evals.items()})
    by: dict[str, int] = {}
    for names in found.values():
        for name in names:
            by[name] = by.get(name, 0) + 1
    if train.num_rows and len(found) == train.num_rows:
        raise ContaminationError(
            f"{where}: train_problems overlap the evaluation problems completely: all {train.num_rows} "
            f"share a word {N}-gram with {', '.join(sorted(by))}; train on a disjoint source or slice")
    ids = train["id"]
    return {"method": METHOD, "checked": train.num_rows, "dropped": len(found), "by_benchmark": by,
            "exclude": [ids[i] for i in sorted(found)]}


def sentence(report: dict) -> str:
    """The decontamination in one line for reports and cards ('' when none was checked)."""
    if not report or not report.get("checked"):
        return ""
    by = ", ".join(f"{n} with {name}" for name, n in sorted(report["by_benchmark"].items()))
    return (f"Decontamination: {report['dropped']} of {report['checked']} training problems overlapped "
            f"held-out problems{f' ({by})' if by else ''} and were left out before sampling; method: "
            f"{report['method']}.")
