"""Per-variant tables with intervals, their markdown, and the plot."""
import math

import pytest
from datasets import Dataset

from toolkit.diagnostics.tables import mean_ci, plot, table_markdown, variant_table


def test_mean_ci_is_the_normal_interval_of_the_non_null_values():
    s = mean_ci([1.0, 2.0, None, 3.0, float("nan")])
    half = 1.96 * 1.0 / math.sqrt(3)                       # sample sd of 1, 2, 3 is 1
    assert s == {"mean": 2.0, "lo": round(2 - half, 4), "hi": round(2 + half, 4), "n": 3}
    assert mean_ci([]) == {"mean": None, "lo": None, "hi": None, "n": 0}


def test_table_perplexity_markdown_and_plot(tmp_path):
    scored = Dataset.from_dict({"problem_id": ["a", "a", "b"], "reward": [0.9, 0.7, None],
                                "reward_kind": ["judge"] * 3, "nll": [1.0, 2.0, 3.0],
                                "nll_tokens": [1, 1, 2], "ngram_overlap": [0.1, 0.2, 0.3]})
    unscored = Dataset.from_dict({"problem_id": ["a"]})
    t = variant_table({"x": scored, "raw": unscored})
    assert t["x"]["rows"] == 3 and t["x"]["problems"] == 2 and t["x"]["reward"]["n"] == 2
    assert t["x"]["perplexity"] == round(math.exp((1 + 2 + 6) / 4), 3)   # token-weighted
    assert t["raw"]["nll"]["n"] == 0 and t["raw"]["perplexity"] is None
    md = table_markdown(t)
    assert md[0].startswith("| variant | rows | problems | reward (judge) | NLL")
    assert "| x | 3 | 2 | 0.800 (" in md[2] and "| raw | 1 | 1 | — | — | — |" in md[3]
    path = plot({"x": scored, "raw": unscored}, t, tmp_path / "d.png")
    assert path.stat().st_size > 1000
    assert plot({"raw": unscored}, {"raw": t["raw"]}, tmp_path / "none.png") is None


@pytest.mark.parametrize("values", [[5.0], [5.0, 5.0]])
def test_one_value_or_no_spread_has_a_zero_width_interval(values):
    s = mean_ci(values)
    assert s["lo"] == s["hi"] == s["mean"] == 5.0
