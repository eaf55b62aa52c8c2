"""Decontamination: crafted overlapping problems are dropped and counted; a complete overlap is
one clear error; the real MAWPS/SVAMP/ASDiv overlap is found."""
import pytest
from datasets import Dataset

from toolkit.decontaminate import N, ContaminationError, check, ngrams, overlap
from toolkit.schema import PROBLEM
from toolkit.sources import SourceConfig, load_problems


def problems(prefix, questions):
    return Dataset.from_list([{"id": f"{prefix}/{i}", "question": q, "gold_answer": "1", "gold_solution": "",
                               "source": prefix, "split": "test"} for i, q in enumerate(questions)],
                             features=PROBLEM)


EVAL = problems("svamp", [
    "Jack had 8 pens and Mary had 5 pens. Jack gave 3 pens to Mary. How many pens does Jack have now?",
    "A baker made 24 cakes. He sold 15 of them. How many cakes does he have left?"])
TRAIN = problems("asdiv", [
    # the same story with another question (SVAMP's variations of ASDiv-A look like this)
    "Jack had 8 pens and Mary had 5 pens. Jack gave 3 pens to Mary. How many pens does Mary have now?",
    "JACK HAD 8 PENS, and Mary had 5 pens... Jack gave 3 pens to Mary! Who has more?",   # case, punctuation
    "A farmer has 12 cows and buys 7 more cows at the market. How many cows does the farmer own?",
    "There are 9 birds on a tree and 4 fly away. How many birds are on the tree?",
    "A baker made 24 cakes.",                                                  # 5 words: one short n-gram
])


def test_overlapping_training_problems_are_dropped_and_counted():
    report = check(TRAIN, {"svamp": EVAL})
    assert report["exclude"] == ["asdiv/0", "asdiv/1"] and report["dropped"] == 2 and report["checked"] == 5
    assert report["by_benchmark"] == {"svamp": 2} and f"{N}-gram" in report["method"]


def test_a_shared_phrase_shorter_than_n_words_is_not_overlap():
    # "how many pens does jack have now" is 7 words: not an 8-gram on its own
    assert overlap(["Ann owns 2 cats. How many pens does Jack have now?"], {"e": EVAL["question"]}) == {}
    assert ngrams("A baker made 24 cakes.") == {("a", "baker", "made", "24", "cakes")}
    assert overlap(["A baker made 24 cakes."], {"e": ["A baker made 24 cakes."]}) == {0: ["e"]}


def test_complete_overlap_is_one_clear_error():
    with pytest.raises(ContaminationError, match=r"recipe x: train_problems overlap the evaluation problems "
                                                 r"completely: all 2 share a word 8-gram with svamp"):
        check(problems("t", EVAL["question"]), {"svamp": EVAL}, where="recipe x")


def test_excluded_ids_leave_the_loaded_slice(shared_data):
    cfg = SourceConfig(source="svamp", limit=5)
    ids = load_problems(cfg)["id"]
    kept = load_problems(SourceConfig(source="svamp", limit=5, exclude=[ids[1], ids[3], "not/an/id"]))
    assert kept["id"] == [ids[0], ids[2], ids[4]]


def test_the_real_svamp_asdiv_overlap_is_found(shared_data):
    svamp = load_problems(SourceConfig(source="svamp", limit=200))
    asdiv = load_problems(SourceConfig(source="asdiv"))
    report = check(svamp, {"asdiv": asdiv})
    assert 0.2 < report["dropped"] / report["checked"] < 0.9    # SVAMP was built from ASDiv-A
    gsm = load_problems(SourceConfig(source="gsm8k", split="test", limit=200))
    assert check(svamp, {"gsm8k": gsm})["dropped"] == 0


def test_a_recipe_whose_training_problems_are_all_held_out_fails_before_any_model(tmp_path, shared_data):
    from toolkit.run import run_recipe
    with pytest.raises(ContaminationError, match="recipe smoke: train_problems overlap the evaluation problems "
                                                 "completely: all 8 share a word 8-gram with svamp/test"):
        run_recipe("smoke", {"eval_problems": {"offset": 0, "limit": 8}}, run_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()          # nothing sampled, no model loaded


def test_overlapping_training_problems_are_left_out_and_reported(tmp_path, shared_data, tiny_model):
    """Held-out problems 0-2 of the 8 training problems: 3 dropped before sampling, counted in
    run.json and the report."""
    import json

    from toolkit.io import load
    from toolkit.run import run_recipe
    run_dir = tmp_path / "run"
    out = run_recipe("smoke", {"eval_problems": {"offset": 0, "limit": 3}, "hub": {"publish": False}},
                     run_dir=str(run_dir))
    held = load_problems(SourceConfig(source="svamp", limit=3))["id"]
    decon = json.loads((run_dir / "run.json").read_text())["decontamination"]
    assert decon["dropped"] == 3 and decon["checked"] == 8 and sorted(decon["exclude"]) == sorted(held)
    assert decon["by_benchmark"] == {"svamp/test": 3} and out["decontamination"]["dropped"] == 3
    samples = load(run_dir / "samples")
    assert len(set(samples["problem_id"])) == 5 and not set(samples["problem_id"]) & set(held)
    assert "Decontamination: 3 of 8 training problems overlapped held-out problems (3 with svamp/test)" \
        in (run_dir / "report.md").read_text()


def test_the_dataset_card_states_the_count_and_method():
    from toolkit.publishing.cards import render_dataset_card
    from toolkit.stats import trace_stats
    from toolkit.schema import TRACE, empty_trace
    rows = Dataset.from_list([{**empty_trace(), "problem_id": "p", "trace_id": "p#0"}], features=TRACE)
    report = check(TRAIN, {"svamp/test": EVAL})
    prov = {"decontamination": {k: report[k] for k in ("method", "checked", "dropped", "by_benchmark")}}
    card = render_dataset_card("qup/x", "v1", {"self": trace_stats(rows)}, prov, {"dataset": "asdiv"},
                               {"self": "self/*.parquet"})
    assert ("**Decontamination**: 2 of 5 training problems overlapped held-out problems (2 with `svamp/test`) "
            "and were left out before sampling. Method: word 8-gram overlap") in card
    assert "Decontamination" not in render_dataset_card("qup/x", "v1", {"self": trace_stats(rows)}, {},
                                                        {"dataset": "asdiv"}, {"self": "self/*.parquet"})
