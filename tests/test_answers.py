"""Answer extraction formats, verification statuses, and hostile input in bounded time."""
from __future__ import annotations

import threading
import time

import pytest

from toolkit.answers import STATUSES, AnswerError, extract_answer, grade, verify


@pytest.mark.parametrize("text, expected", [
    # \boxed{} with nested braces, the last one wins
    (r"First $\boxed{3}$, corrected: $\boxed{\frac{\sqrt{2}}{2}}$.", r"\frac{\sqrt{2}}{2}"),
    (r"\boxed{\frac{\frac{1}{2}}{3}}", r"\frac{\frac{1}{2}}{3}"),
    # GSM8K
    ("She has 6 + 12 = <<6+12=18>>18 eggs.\n#### 18", "18"),
    ("Total is 1,080 dollars\n#### 1,080", "1080"),
    # the prompt's format and its drifts
    ("6 + 12 = 18.\nThe answer is: 18", "18"),
    ("so the answer is 18 apples.", "18"),
    ("The answer is $18.", "18"),
    ("the answer is -2.", "-2"),
    ("The answer is 3.50 dollars", "3.50"),
    ("**Answer:** 42", "42"),
    ("Answer:\n 7", "7"),
    ("Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.", r"\frac{1}{2}"),
    (r"The answer is: \left( 3, \frac{\pi}{2} \right)", r"\left( 3, \frac{\pi}{2} \right)"),
    ("The answer is 2k", "2k"),
    ("The answer is Yes.", "Yes"),
    # "answer:" inside prose is not a label; the boxed answer stands
    (r"So $\boxed{44}$. We may check our answer: $17\cdot 44 = 748$, so it is right.", "44"),
    # no marker: the last plain number
    ("She pays $1,250 in total.", "1250"),
    ("It costs $5 per day", "5"),
    ("The price was 3.50 now", "3.50"),
    ("the temperature is -2 today", "-2"),
    ("about 3/4 of them", "3/4"),
    ("a rise of 25% overall", "25"),
    ("16 - 3 - 4 = 9", "9"),
    ("no numbers here", None),
    ("", None),
    (None, None),
])
def test_extract_answer_formats(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("pred, gold, status", [
    ("18", "18", "correct"),
    ("1,080", "1080", "correct"),
    ("$5", "5", "correct"),
    ("3.0", "3", "correct"),
    ("0.5", "1/2", "correct"),
    (r"\frac{1}{2}", "0.5", "correct"),
    (r"\dfrac{2}{4}", r"\frac12", "correct"),
    ("(3, \\frac{\\pi}{2})", r"\left( 3, \frac{\pi}{2} \right)", "correct"),
    (r"\$32,\!348", r"\$32,\!348", "correct"),
    ("yes", "Yes", "correct"),
    ("17", "18", "wrong"),
    ("0.33", "1/3", "wrong"),
    ("x+1", r"\frac{\pi}{2}", "wrong"),
    ("No", "Yes", "wrong"),
    (None, "18", "no_answer"),
    ("", "18", "no_answer"),
    (None, r"\frac{1}{2}", "no_answer"),
])
def test_verify_statuses(pred, gold, status):
    assert verify(pred, gold) == status


@pytest.mark.parametrize("gold", ["", "   ", r"\frac{1}{0", ")(", "9" * 5000])
@pytest.mark.parametrize("pred", ["3", r"\frac{1}{0", None, ")("])
def test_unparseable_gold_is_never_correct(pred, gold):
    """Even an identical prediction must not pass against a gold that cannot be parsed."""
    assert verify(pred, gold) == "unverifiable_gold"


def test_grade_and_bad_timeout():
    assert grade("... so she has 7 left.\nThe answer is: 7", "7") == ("7", "correct")
    assert grade("I am not sure.", "7") == (None, "no_answer")
    with pytest.raises(AnswerError, match="timeout_s"):
        verify("1", "1", timeout_s=0)


HOSTILE = [
    "9" * 100000,                                     # a 100k-digit "number"
    "10^{10^{10}}",                                   # 10**10**10 if evaluated
    "10**10**10",
    "2^{2^{2^{2^{2^{2^{2}}}}}}",
    "\\frac{" * 500 + "1" + "}{2}" * 500,             # 500-deep nested fractions
    "\\frac{" * 80 + "1" + "}{2}" * 80,               # deep, yet under the length cap: parsed
    "\\boxed{" + "\\frac{" * 500 + "1" + "}{2}" * 500 + "}",
    "(" * 5000 + "1" + ")" * 5000,
    "{" * 100000,                                     # unbalanced braces
]


@pytest.mark.parametrize("gold", ["5", r"\frac{1}{2}"])
def test_hostile_input_is_bounded_and_not_correct(gold):
    start = time.monotonic()
    for text in HOSTILE:
        t0 = time.monotonic()
        answer = extract_answer(text)
        assert time.monotonic() - t0 < 5, "extraction must be linear"
        status = verify(answer if answer is not None else text, gold, timeout_s=2)
        assert status in ("wrong", "timeout", "no_answer"), (text[:30], status)
    # 8 inputs × (2 s limit + worker restart): generous for a loaded 2-core machine
    assert time.monotonic() - start < 90
    assert verify("5" if gold == "5" else "0.5", gold) == "correct"  # worker recovered


def test_hostile_gold_times_out_not_correct():
    start = time.monotonic()
    assert verify("1", "10^{10^{10}}", timeout_s=2) in ("unverifiable_gold", "timeout")
    assert time.monotonic() - start < 30


def test_verify_from_threads():
    """math-verify's signal timeouts only work in the main thread; ours must not care."""
    golds = [(r"\frac{2}{4}", "0.5"), ("x^2+2x+1", "(x+1)^2"), ("10^{10^{10}}", "3"), ("7", "8")]
    results: dict[int, str] = {}

    def run(i, pred, gold):
        results[i] = verify(pred, gold, timeout_s=2)

    threads = [threading.Thread(target=run, args=(i, p, g)) for i, (p, g) in enumerate(golds)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert time.monotonic() - start < 60
    assert results[0] == "correct" and results[1] == "correct"
    assert results[2] in ("wrong", "timeout") and results[3] == "wrong"
    assert set(results.values()) <= set(STATUSES)
