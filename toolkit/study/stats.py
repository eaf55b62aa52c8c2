"""Statistics of the study: paired comparisons on the same problems, rank correlation, power.

Two adapters evaluated on the same problems are compared *paired*: only the problems one solves
and the other does not (the discordant pairs) carry information. McNemar's exact test counts them;
the paired bootstrap resamples problems (all seeds of a problem together) to give an interval for
the accuracy difference.

Example:
    >>> mcnemar(b=9, c=2)["p"] < 0.07
    True
    >>> spearman([1, 2, 3, 4], [10, 20, 40, 30])["rho"]
    0.8
    >>> sample_size(discordant=0.10, delta=0.05)
    312
"""
from __future__ import annotations

import functools
import math
import random
from statistics import NormalDist


def mcnemar(b: int, c: int) -> dict:
    """Exact two-sided McNemar test: ``b`` pairs only the first got right, ``c`` only the second.

    p = P(X <= min(b, c)) * 2 under X ~ Binomial(b + c, 1/2), capped at 1.
    """
    n = b + c
    if n == 0:
        return {"b": b, "c": c, "p": 1.0}
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2 ** n
    return {"b": b, "c": c, "p": min(1.0, 2 * tail)}


def paired_bootstrap(a: dict[str, list[bool]], b: dict[str, list[bool]], n_boot: int = 2000,
                     seed: int = 0) -> dict:
    """95% percentile interval of accuracy(a) − accuracy(b) over problems present in both.

    ``a``/``b`` map a problem id to its outcomes (one per seed); problems are resampled with all
    their seeds, so the interval reflects problem-to-problem variation (what a new set would show).
    """
    ids = sorted(set(a) & set(b))
    if not ids:
        return {"diff": None, "lo": None, "hi": None, "problems": 0}
    diffs = [sum(a[i]) / len(a[i]) - sum(b[i]) / len(b[i]) for i in ids]
    rng = random.Random(seed)
    n = len(diffs)
    boots = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(n_boot))
    return {"diff": sum(diffs) / n, "lo": boots[int(0.025 * n_boot)],
            "hi": boots[min(n_boot - 1, int(0.975 * n_boot))], "problems": n}


def _ranks(xs: list[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1      # ties share their mean rank
        i = j + 1
    return ranks


def _pearson(x: list[float], y: list[float]) -> float | None:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sx = math.sqrt(sum((v - mx) ** 2 for v in x))
    sy = math.sqrt(sum((v - my) ** 2 for v in y))
    if sx == 0 or sy == 0:
        return None
    return sum((u - mx) * (v - my) for u, v in zip(x, y)) / (sx * sy)


EXACT_N = 10      # exact permutation p up to 10! = 3.6 M orderings (a few seconds with numpy)


def spearman(x: list[float], y: list[float]) -> dict:
    """Spearman's rho (ties: mean ranks) and its exact permutation p-value (two-sided: the share
    of the n! orderings of ``y``'s ranks with |rho| at least as large) for n <= 10; beyond that,
    p from 200,000 random orderings (``p_exact`` False).

    rho is None when either side is constant (no ranking to compare).
    """
    if len(x) != len(y):
        raise ValueError(f"spearman: {len(x)} predictions vs {len(y)} outcomes")
    n = len(x)
    if n < 3:
        return {"rho": None, "p": None, "n": n}
    rx, ry = _ranks(x), _ranks(y)
    rho = _pearson(rx, ry)
    if rho is None:
        return {"rho": None, "p": None, "n": n}
    return {"rho": round(rho, 4), **_permutation_p(rx, ry, rho), "n": n}


@functools.lru_cache(maxsize=2)
def _orderings(n: int):
    """Every ordering of range(n) as an ``(n!, n)`` int8 array (built by inserting k into each
    ordering of range(k) at every position)."""
    import numpy as np
    perms = np.zeros((1, 0), dtype=np.int8)
    for k in range(n):
        m = len(perms)
        grown = np.empty((m * (k + 1), k + 1), dtype=np.int8)
        for pos in range(k + 1):
            block = grown[pos * m:(pos + 1) * m]
            block[:, :pos], block[:, pos], block[:, pos + 1:] = perms[:, :pos], k, perms[:, pos:]
        perms = grown
    return perms


def _permutation_p(rx: list[float], ry: list[float], rho: float) -> dict:
    import numpy as np
    a = np.asarray(rx) - np.mean(rx)
    b = np.asarray(ry) - np.mean(ry)
    scale = np.sqrt((a ** 2).sum() * (b ** 2).sum())
    n = len(rx)
    exact = n <= EXACT_N
    orders = _orderings(n) if exact else np.random.default_rng(0).permuted(
        np.tile(np.arange(n), (200_000, 1)), axis=1)
    hits = sum(int((np.abs((b[chunk] @ a) / scale) >= abs(rho) - 1e-12).sum())
               for chunk in np.array_split(orders, max(1, len(orders) // 400_000)))
    return {"p": hits / len(orders), "p_exact": exact}


def sample_size(discordant: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Problems needed for McNemar's test to detect an accuracy difference ``delta`` with the given
    power, when a share ``discordant`` of problems is solved by exactly one of the two models
    (Connor 1987). None when no size can (discordant <= |delta|).
    """
    delta = abs(delta)
    if not 0 < delta < discordant <= 1:
        return None
    z = NormalDist()
    za, zb = z.inv_cdf(1 - alpha / 2), z.inv_cdf(power)
    n = (za * math.sqrt(discordant) + zb * math.sqrt(discordant - delta ** 2)) ** 2 / delta ** 2
    return math.ceil(n)


def detectable(discordant: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The smallest accuracy difference McNemar's test detects on ``n`` problems with the given
    power (the inverse of :func:`sample_size`); None when none can.

    >>> sample_size(0.066, 0.05), round(detectable(0.066, 205), 3), detectable(0.066, 100)
    (205, 0.05, None)
    """
    if not 0 < discordant <= 1 or n < 1:
        return None
    lo, hi = 1e-6, discordant - 1e-9
    if (sample_size(discordant, hi, alpha, power) or n + 1) > n:
        return None
    for _ in range(60):                       # sample_size falls as the difference grows
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if (sample_size(discordant, mid, alpha, power) or n + 1) <= n else (mid, hi)
    return hi
