"""A diagnostic column declared once shows up everywhere: the scored dataset, the dataset card,
the run table and the study's results (issue 22, item 3)."""
import pytest
from datasets import Dataset

from toolkit.diagnostics import columns as C
from toolkit.diagnostics.columns import Column
from toolkit.io import load, save
from toolkit.schema import TRACE, empty_trace, results, trace
from toolkit.stages.score import ScoreConfig, score_command


def digits(rows, models):
    """A toy metric: the share of a completion's characters that are digits."""
    return [sum(ch.isdigit() for ch in r["completion"]) / max(len(r["completion"]), 1) for r in rows]


@pytest.fixture
def toy():
    with C.registered(Column("digit_share", "digit share", higher_is_better=True,
                             doc="share of digits"), score=digits) as metric:
        yield metric


def traces(n=6):
    rows = [{**empty_trace(), "problem_id": f"p{i // 2}", "trace_id": f"p{i // 2}#{i % 2}",
             "question": f"What is {i} + 2?", "completion": f"{i} + 2 = {i + 2}. The answer is: {i + 2}",
             "completion_tokens": 10 + i, "prompt_id": "math_cot@x", "variant": "self"} for i in range(n)]
    return Dataset.from_list(rows, features=TRACE)


def test_a_toy_column_registered_once_shows_up_everywhere(toy, tmp_path, capsys):
    from toolkit.publishing.cards import render_dataset_card
    from toolkit.publishing.publish import _encode_variant
    from toolkit.run import print_table
    from toolkit.study.results import _data_figures, to_dataset
    from toolkit.diagnostics.tables import variant_table
    assert "digit_share" in trace() and "digit_share" in results()

    save(traces(), tmp_path / "self")
    out = tmp_path / "scored"
    summary = score_command(ScoreConfig(data=str(tmp_path / "self"), out=str(out), reward="none",
                                        embedder="", shard_size=4))
    scored = load(out)                                           # the scored dataset
    assert scored.features["digit_share"].dtype == "float32"
    assert scored["digit_share"] == pytest.approx(digits(traces().to_list(), None))
    assert summary["diagnostics"]["digit_share"] == pytest.approx(sum(scored["digit_share"]) / 6, abs=1e-4)

    _, stats = _encode_variant("self", scored)                   # the dataset card
    card = render_dataset_card("qup/x", "v1", {"self": stats}, {}, {}, {"self": "self/*.parquet"})
    assert "digit share" in card and f"{stats['diagnostics_ci']['digit_share']['mean']:.3f}" in card

    table = variant_table({"self": scored})                      # the run table
    print_table({"name": "toy", "eval_source": "x/test", "diagnostics": table,
                 "evaluations": {"base": {"correct": 1, "total": 2, "accuracy": 0.5},
                                 "self": {"correct": 2, "total": 2, "accuracy": 1.0}}})
    err = capsys.readouterr().err
    assert "digit share" in err and f"{table['self']['digit_share']['mean']:.3f}" in err

    figures = _data_figures(str(out))                            # the study's results
    row = {**{k: None for k in results()}, **figures, "variant": "self", "seed": 0}
    res = to_dataset([row])
    assert res["digit_share"][0] == pytest.approx(figures["digit_share"])


def test_the_toy_column_leaves_no_trace_once_unregistered(tmp_path):
    with C.registered(Column("digit_share", "digit share"), score=digits):
        assert "digit_share" in C.names()
    assert "digit_share" not in C.names() and "digit_share" not in trace()


def test_a_column_name_is_registered_once_and_a_scorer_returns_a_value_per_row():
    with pytest.raises(ValueError, match="already registered"):
        C.register(Column("nll", "NLL"), score=digits)
    metric = C.Metric((Column("x", "x"),), lambda rows, m: [1.0])
    with pytest.raises(ValueError, match="returned 1 values for 2 rows"):
        metric([{}, {}], C.Models())
    with pytest.raises(ValueError, match="unknown needs"):
        C.Metric((Column("x", "x"),), digits, needs=("oracle",))
