"""pass@k and maj@k from ``n`` samples per problem, with 95% intervals.

``pass@k`` is the unbiased estimator of Chen et al. (2021): per problem with ``c`` correct of
``n`` samples, ``1 - C(n-c, k) / C(n, k)``, averaged over problems (open-r1 reports MATH-500
pass@1 as the mean over 4 samples at temperature 0.6). ``maj@k`` is lighteval's: the most frequent
answer among a problem's first ``k`` samples (ties: the one seen first) is graded. Intervals:
a seeded percentile bootstrap over problems (the samples of one problem stay together).

Example:
    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 4), pass_at_k(4, 0, 2)
    (0.25, 1.0, 0.0)
    >>> maj_at_k(["18", "17", "18"], [True, False, True], 3)
    True
    >>> pass_at_k(2, 1, 4)
    Traceback (most recent call last):
    ...
    toolkit.passk.PassKError: pass@4 needs at least 4 samples per problem, got n = 2
"""
from __future__ import annotations

import random
from math import comb

from .errors import QupError


class PassKError(QupError, ValueError):
    """pass@k / maj@k asked of too few samples (``n < k``) or with ``k < 1``."""


def check_k(n: int, k: int, what: str = "pass") -> None:
    """One clear error for ``k < 1`` or ``n < k``."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise PassKError(f"{what}@k: k must be an integer >= 1, got {k!r}")
    if n < k:
        raise PassKError(f"{what}@{k} needs at least {k} samples per problem, got n = {n}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased probability that at least one of ``k`` of the ``n`` samples (``c`` correct) is."""
    check_k(n, k)
    if not 0 <= c <= n:
        raise PassKError(f"pass@k: correct samples must be in [0, n = {n}], got {c}")
    return 1.0 if n - c < k else 1.0 - comb(n - c, k) / comb(n, k)


def maj_at_k(answers: list[str], correct: list[bool], k: int) -> bool:
    """Whether the majority answer of the first ``k`` samples is correct (empty answers don't vote)."""
    check_k(len(answers), k, "maj")
    votes: dict[str, list[int]] = {}
    for i, a in enumerate(answers[:k]):
        if a:
            votes.setdefault(a, []).append(i)
    if not votes:
        return False
    best = max(votes.values(), key=lambda idx: (len(idx), -idx[0]))
    return bool(correct[best[0]])


def bootstrap_ci(values: list[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of per-problem ``values``.

    >>> bootstrap_ci([1.0] * 5)
    (1.0, 1.0)
    """
    if not values:
        return 0.0, 0.0
    rng, n = random.Random(seed), len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    return means[int(0.025 * resamples)], means[min(resamples - 1, int(0.975 * resamples))]


def scores(outcomes: list[list[bool]], answers: list[list[str]], ks: list[int],
           maj: bool = True) -> dict[str, dict]:
    """``{"pass@k": {...}, "maj@k": {...}}`` over problems, each with value and 95% interval.

    ``outcomes[i]``/``answers[i]``: problem ``i``'s samples in draw order.

    >>> s = scores([[True, False], [False, False]], [["1", "2"], ["3", "3"]], [1, 2])
    >>> s["pass@1"]["value"], s["pass@2"]["value"], s["maj@2"]["value"]
    (0.25, 0.5, 0.5)
    """
    n = min((len(o) for o in outcomes), default=0)
    out = {}
    for k in ks:
        check_k(n, k)
        per = [pass_at_k(len(o), sum(o), k) for o in outcomes]
        out[f"pass@{k}"] = _summary(per, "unbiased (Chen et al. 2021)", n)
        if maj and k > 1:
            per = [float(maj_at_k(a, o, k)) for a, o in zip(answers, outcomes)]
            out[f"maj@{k}"] = _summary(per, "majority of the first k samples", n)
    return out


def _summary(per: list[float], estimator: str, n: int) -> dict:
    lo, hi = bootstrap_ci(per)
    return {"value": sum(per) / len(per) if per else 0.0, "ci_low": lo, "ci_high": hi,
            "problems": len(per), "n": n, "estimator": estimator, "interval": "95% bootstrap over problems"}
