"""The study's statistics against values worked out by hand or by definition."""
import math
import random

import pytest

from toolkit.study.stats import detectable, mcnemar, paired_bootstrap, sample_size, spearman


def test_mcnemar_exact_matches_the_binomial_tail():
    # b=9, c=2: 2 * P(X <= 2 | n=11, 1/2) = 2 * (1 + 11 + 55) / 2048
    assert mcnemar(9, 2)["p"] == pytest.approx(2 * 67 / 2048)
    assert mcnemar(2, 9)["p"] == mcnemar(9, 2)["p"]
    assert mcnemar(5, 5)["p"] == 1.0 and mcnemar(0, 0)["p"] == 1.0
    assert mcnemar(0, 12)["p"] == pytest.approx(2 / 4096)


def test_spearman_with_ties_and_permutation_p():
    assert spearman([1, 2, 3, 4], [1, 2, 3, 4]) == {"rho": 1.0, "p": pytest.approx(2 / 24), "p_exact": True, "n": 4}
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1])["rho"] == -1.0
    tied = spearman([1, 1, 2, 3], [1, 2, 3, 4])   # mean ranks 1.5, 1.5, 3, 4 against 1..4
    assert tied["rho"] == pytest.approx(0.9487, abs=1e-4)
    assert spearman([1, 1, 1], [1, 2, 3])["rho"] is None     # a constant predictor ranks nothing
    assert spearman([1, 2], [2, 1])["rho"] is None           # too few to rank
    with pytest.raises(ValueError):
        spearman([1, 2, 3], [1, 2])


def test_paired_bootstrap_interval_covers_the_difference_and_shrinks_with_n():
    rng = random.Random(1)
    small = {f"p{i}": [rng.random() < 0.6] for i in range(40)}
    other = {f"p{i}": [rng.random() < 0.4] for i in range(40)}
    r = paired_bootstrap(small, other, n_boot=1000)
    assert r["lo"] <= r["diff"] <= r["hi"] and r["problems"] == 40
    big_a = {f"p{i}": [rng.random() < 0.6] for i in range(400)}
    big_b = {f"p{i}": [rng.random() < 0.4] for i in range(400)}
    big = paired_bootstrap(big_a, big_b, n_boot=1000)
    assert big["hi"] - big["lo"] < r["hi"] - r["lo"]
    assert paired_bootstrap({}, other)["diff"] is None


def test_sample_size_grows_as_the_effect_shrinks():
    assert sample_size(0.10, 0.05) == 312
    assert sample_size(0.10, 0.02) > sample_size(0.10, 0.05) > sample_size(0.20, 0.10) / 4
    assert sample_size(0.05, 0.05) is None and sample_size(0.1, 0.0) is None
    # Connor's formula by hand at psi=0.2, delta=0.1
    n = (1.959964 * math.sqrt(0.2) + 0.841621 * math.sqrt(0.19)) ** 2 / 0.01
    assert sample_size(0.2, 0.1) == math.ceil(n)


def test_detectable_is_the_inverse_of_sample_size():
    for psi, n in ((0.10, 312), (0.2, 150), (0.066, 400)):
        d = detectable(psi, n)
        assert sample_size(psi, d) <= n < sample_size(psi, d * 0.99)
    assert detectable(0.066, 100) is None      # at most psi apart, and even that needs ~117
    assert detectable(0.10, 1000) < detectable(0.10, 312)


def test_base_run_is_counted_once_in_mcnemar_but_pairs_every_seed_in_the_bootstrap():
    from toolkit.study.report import _paired
    base = {-1: {"p1": True, "p2": False, "p3": False}}
    rft = {0: {"p1": False, "p2": False, "p3": True}, 1: {"p1": False, "p2": True, "p3": True}}
    r = _paired(base, rft, 200)
    assert (r["b"], r["c"], r["pairs"]) == (1, 1, 3)          # seed 0 only, not 2 + 3 over 6 pairs
    assert r["bootstrap"]["diff"] == pytest.approx(1 / 3 - 1 / 2)   # rft: the mean of its seeds
    both = _paired({0: rft[0], 1: rft[1]}, {0: rft[1], 1: rft[0]}, 200)
    assert both["pairs"] == 6 and (both["b"], both["c"]) == (1, 1)   # seeds pool as before


def test_spearman_p_is_exact_up_to_ten_variants():
    import itertools
    import math
    assert spearman(list(range(10)), list(range(10)))["p"] == pytest.approx(2 / math.factorial(10))
    x, y = [3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]        # ties on both sides
    got = spearman(x, y)

    def rho(a, b):     # Pearson on mean ranks, by hand
        ma, mb = sum(a) / len(a), sum(b) / len(b)
        cov = sum((u - ma) * (v - mb) for u, v in zip(a, b))
        return cov / math.sqrt(sum((u - ma) ** 2 for u in a) * sum((v - mb) ** 2 for v in b))
    from toolkit.study.stats import _ranks
    rx, ry = _ranks(x), _ranks(y)
    perms = list(itertools.permutations(ry))
    want = sum(abs(rho(rx, q)) >= abs(rho(rx, ry)) - 1e-12 for q in perms) / len(perms)
    assert got["p"] == pytest.approx(want) and got["p_exact"] and got["rho"] == pytest.approx(rho(rx, ry), abs=1e-4)
    big = spearman(list(range(12)), [0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10])
    assert big["p_exact"] is False and big["p"] < 0.001
