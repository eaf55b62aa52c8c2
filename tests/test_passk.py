"""pass@k / maj@k estimators: checked against brute force over every k-subset of the samples."""
from itertools import combinations

import pytest

from toolkit.errors import QupError
from toolkit.passk import PassKError, bootstrap_ci, maj_at_k, pass_at_k, scores


@pytest.mark.parametrize("n,c,k", [(4, 1, 1), (4, 2, 2), (5, 0, 3), (6, 6, 2), (8, 3, 4), (3, 1, 3)])
def test_pass_at_k_is_the_mean_over_every_k_subset(n, c, k):
    flags = [True] * c + [False] * (n - c)
    subsets = list(combinations(flags, k))
    assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


def test_maj_at_k_votes_over_the_first_k_answers_and_breaks_ties_by_first_seen():
    answers, correct = ["5", "7", "7", "5", "5"], [True, False, False, True, True]
    assert maj_at_k(answers, correct, 3) is False          # 7 twice in the first three
    assert maj_at_k(answers, correct, 5) is True           # 5 three times in five
    assert maj_at_k(["5", "7"], [True, False], 2) is True  # tie: the first seen
    assert maj_at_k(["", "", "7"], [False, False, True], 3) is True   # no answer does not vote


@pytest.mark.parametrize("call,match", [
    (lambda: pass_at_k(2, 1, 3), r"pass@3 needs at least 3 samples per problem, got n = 2"),
    (lambda: pass_at_k(4, 1, 0), r"k must be an integer >= 1, got 0"),
    (lambda: maj_at_k(["1"], [True], 2), r"maj@2 needs at least 2 samples"),
    (lambda: scores([[True, False]], [["1", "2"]], [4]), r"pass@4 needs at least 4"),
])
def test_too_few_samples_or_k_below_one_is_one_clear_error(call, match):
    with pytest.raises(PassKError, match=match) as e:
        call()
    assert isinstance(e.value, QupError)


def test_scores_have_intervals_that_contain_the_estimate():
    outcomes = [[i % 3 == 0, i % 2 == 0, False, True] for i in range(30)]
    answers = [["1" if o else "2" for o in row] for row in outcomes]
    s = scores(outcomes, answers, [1, 2, 4])
    assert set(s) == {"pass@1", "pass@2", "pass@4", "maj@2", "maj@4"}
    for v in s.values():
        assert v["ci_low"] <= v["value"] <= v["ci_high"] and v["problems"] == 30 and v["n"] == 4
    assert s["pass@1"]["value"] == pytest.approx(sum(map(sum, outcomes)) / 120)
    assert s["pass@1"]["value"] <= s["pass@2"]["value"] <= s["pass@4"]["value"] == 1.0
    assert bootstrap_ci([0.0, 1.0] * 50) != (0.5, 0.5)
