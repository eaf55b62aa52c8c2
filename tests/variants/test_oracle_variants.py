"""The Oracle variants' logic, with scripted models playing the Oracle and the SLM.

The scripted models implement the project's own Generator interface (a test double of our
interface, not of a library): their answers are fixed so the tests can check what each variant
keeps, how it records provenance, and that SAR's repaired prefix really starts the completion.
"""
import json

import pytest
from datasets import Dataset

from toolkit.config import ConfigError
from toolkit.generation import Completion, SamplingParams
from toolkit.generation.roles import ReferenceOracle
from toolkit.schema import TRACE, empty_trace
from toolkit.stages.verify import verify
from toolkit.variants import BuildContext, get
from toolkit.variants.oracle import sharded
from toolkit.variants.oracle_refine import OracleRefineConfig
from toolkit.variants.oracle_synth import OracleSynthConfig
from toolkit.variants.style_aligned import StyleAlignedConfig

Q = "Tom has 3 apples and buys 4 more. How many apples does he have?"
PARAMS = SamplingParams(max_new_tokens=64, temperature=0.7, top_p=0.95, seed=11)
TRACES = {  # SLM traces of one problem (gold 7)
    "right": "3 + 4 = 7.\nThe answer is: 7",
    "slip": "Tom starts with 3.\n3 + 4 = 8.\nThe answer is: 8",
    "lost": "Tom has some apples.\nHe has 12 now.\nThe answer is: 12",
}


class Scripted:
    """A Generator whose answer to a prompt is ``answer(prompt, request)``."""

    def __init__(self, answer, model_id="test/oracle", system="You are a scripted Oracle."):
        self.answer, self.model_id, self.model_revision, self.dtype = answer, model_id, "r1", "float32"
        self.system, self.requests = system, []

    def render_chat(self, messages):
        return f"<sys>{self.system}</sys><user>{messages[-1]['content']}</user><assistant>"

    def generate(self, requests, progress=True):
        self.requests += list(requests)
        texts = [self.answer(r.prompt, r) for r in requests]
        return [Completion(t, 5, len(t.split()), "eos_token") for t in texts]


def oracle_answer(prompt, request):
    if "Write your own complete" in prompt:        # oracle_refine
        return "**Solution.** Tom has $3 + 4 = 7$ apples.\n\n\\boxed{7}"
    if "as few changes as possible" in prompt:     # SAR minimal_edit
        if "3 + 4 = 8" in prompt:
            return "Tom starts with 3.\n3 + 4 = 7.\nThe answer is: 7"
        return "Let us rethink everything from the very start with a completely new plan: " \
               "first count, then add, then check. 3 + 4 = 7. The answer is: 7"
    if "Which step" in prompt:                     # SAR prefix: locate
        return "Step 2"
    if "Rewrite only this one step" in prompt:     # SAR prefix: fix the step
        return "3 + 4 = 7." if "3 + 4 = 8" in prompt else "He buys 4 more, so 3 + 4 = 7 now."
    return "3 + 4 = 7. The answer is: 7"           # solve from scratch (oracle_synth)


def slm_answer(prompt, request):
    return "The answer is: 7" if request.params.seed % 2 else "The answer is: 9"


@pytest.fixture
def parent() -> Dataset:
    rows = []
    for i, (name, text) in enumerate(TRACES.items()):
        row = empty_trace()
        row.update(id="p1", problem_id="p1", question=Q, gold_answer="7", trace_id=f"p1#{i}",
                   sample_index=i, seed=i, model_id="test/slm", model_revision="r0", prompt_id="math_cot@x",
                   params=PARAMS.to_json(), prompt=f"<slm-prompt>{Q}</slm-prompt>", completion=text,
                   completion_tokens=len(text.split()), variant="self", gold_solution="3 + 4 = 7. #### 7")
        rows.append(row)
    return verify(Dataset.from_list(rows, features=TRACE))


def ctx_with(tmp_path, **roles) -> BuildContext:
    return BuildContext(roles={k: (lambda g=g: g) for k, g in roles.items()}, workdir=tmp_path,
                        tokenize=str.split)


def test_oracle_refine_keeps_the_oracles_wording_and_records_provenance(parent, tmp_path):
    oracle = Scripted(oracle_answer)
    ctx = ctx_with(tmp_path, oracle=oracle)
    out = get("oracle_refine").build(parent, OracleRefineConfig(), ctx)
    assert len(oracle.requests) == 3                     # every SLM trace, correct or not
    assert len(out) == 1                                 # three identical rewrites: one kept
    row = out[0]
    assert row["completion"].startswith("**Solution.**") and row["answer"] == "7" and row["correct"]
    assert (row["variant"], row["mode"], row["parent_id"]) == ("oracle_refine", "refine", "p1#0")
    assert (row["model_id"], row["oracle_model_id"], row["oracle_model_revision"]) == ("test/oracle",) * 2 + ("r1",)
    assert row["oracle_prompt"].startswith("<sys>You are a scripted Oracle.</sys>")   # as rendered
    assert TRACES["right"] in row["oracle_prompt"] and row["oracle_prompt_id"].startswith("oracle_refine@")
    assert row["oracle_token_share"] == 1.0 and 0 < row["edit_distance"] <= 1
    assert row["prompt"] == parent[0]["prompt"] and row["prompt_id"] == "math_cot@x"  # training prompt


def test_style_aligned_minimal_edit_passes_correct_traces_and_enforces_the_budget(parent, tmp_path):
    ctx = ctx_with(tmp_path, oracle=Scripted(oracle_answer))
    out = get("style_aligned").build(parent, StyleAlignedConfig(mode="minimal_edit", edit_budget=0.3), ctx)
    rows = {r["parent_id"]: r for r in out}
    assert set(rows) == {"p1#0", "p1#1"}                 # the rewrite of "lost" is over budget
    assert ctx.counts["over_edit_budget"] == 1
    kept, edited = rows["p1#0"], rows["p1#1"]
    assert (kept["mode"], kept["completion"], kept["edit_distance"], kept["oracle_token_share"]) == (
        "passthrough", TRACES["right"], 0.0, 0.0)
    assert edited["mode"] == "minimal_edit" and edited["correct"] and edited["model_id"] == "test/slm"
    assert 0 < edited["edit_distance"] <= 0.3 and 0 < edited["oracle_token_share"] < 0.5


def test_style_aligned_prefix_repairs_one_step_and_the_slm_continues(parent, tmp_path):
    oracle, slm = Scripted(oracle_answer), Scripted(slm_answer, model_id="test/slm")
    ctx = ctx_with(tmp_path, oracle=oracle, slm=slm)
    out = get("style_aligned").build(parent, StyleAlignedConfig(mode="prefix", continuations=2), ctx)
    asked = [r.prompt for r in oracle.requests]
    assert sum("Which step" in p for p in asked) == 1    # the slip was found by arithmetic alone
    assert sum("Rewrite only this one step" in p for p in asked) == 2
    repaired = [r for r in out if r["mode"] == "prefix"]
    assert {r["parent_id"] for r in repaired} == {"p1#1", "p1#2"}
    slip = next(r for r in repaired if r["parent_id"] == "p1#1")
    prefix = "Tom starts with 3.\n3 + 4 = 7.\n"
    assert slip["completion"] == prefix + "The answer is: 7" and slip["correct"]
    req = next(r for r in slm.requests if r.params.seed == json.loads(slip["params"])["seed"])
    assert req.prompt == parent[1]["prompt"] + prefix    # the SLM's own prompt, then the prefix
    assert (req.params.temperature, req.params.top_p, req.params.max_new_tokens) == (0.7, 0.95, 64)
    assert slip["model_id"] == "test/slm" and slip["oracle_model_id"] == "test/oracle"
    assert 0 < slip["oracle_token_share"] < 1
    assert len(slm.requests) == 4                        # 2 repaired traces x 2 seeds
    assert ctx.counts["repair_wrong"] == sum(r.params.seed % 2 == 0 for r in slm.requests)
    assert [r["mode"] for r in out if r["parent_id"] == "p1#0"] == ["passthrough"]


def test_the_oracles_budget_is_the_first_traces_of_each_problem(parent, tmp_path):
    oracle = Scripted(oracle_answer)
    ctx = ctx_with(tmp_path, oracle=oracle)
    out = get("oracle_refine").build(parent, OracleRefineConfig(traces_per_problem=1), ctx)
    assert len(oracle.requests) == 1 and out["parent_id"] == ["p1#0"]
    oracle, slm = Scripted(oracle_answer), Scripted(slm_answer, model_id="test/slm")
    ctx = ctx_with(tmp_path / "sar", oracle=oracle, slm=slm)
    out = get("style_aligned").build(parent, StyleAlignedConfig(mode="prefix", continuations=2,
                                                                traces_per_problem=1), ctx)
    assert {r["parent_id"] for r in out if r["mode"] == "prefix"} == {"p1#1"}   # the first wrong one
    assert len(slm.requests) == 2
    with pytest.raises(ConfigError, match="traces_per_problem must be >= 1"):
        OracleRefineConfig(traces_per_problem=0)


def test_oracle_synth_from_a_model_and_from_the_reference(parent, tmp_path):
    oracle = Scripted(oracle_answer)
    out = get("oracle_synth").build(parent, OracleSynthConfig(k=2, temperature=0.8),
                                    ctx_with(tmp_path / "a", oracle=oracle))
    assert len(oracle.requests) == 2 and len(out) == 1   # one problem, k=2, duplicates dropped
    assert out[0]["mode"] == "synth" and out[0]["parent_id"] == "" and out[0]["correct"]
    ref = get("oracle_synth").build(parent, None, ctx_with(tmp_path / "b", oracle=ReferenceOracle()))
    assert ref["completion"] == ["3 + 4 = 7. #### 7"] and ref["mode"] == ["reference"] and ref["correct"] == [True]


def test_empty_oracle_answers_are_counted_not_silently_dropped(parent, tmp_path):
    ctx = ctx_with(tmp_path, oracle=Scripted(lambda p, r: "  "))
    out = get("oracle_refine").build(parent, None, ctx)
    assert len(out) == 0 and ctx.counts["oracle_empty"] == 3


def test_reference_oracle_cannot_refine(parent, tmp_path):
    from toolkit.config import ConfigError
    with pytest.raises(ConfigError, match="oracle_refine needs a model as Oracle"):
        get("oracle_refine").build(parent, None, ctx_with(tmp_path, oracle=ReferenceOracle()))


def test_missing_role_is_a_clear_error(parent, tmp_path):
    from toolkit.config import ConfigError
    with pytest.raises(ConfigError, match="needs the model role 'oracle'"):
        get("oracle_refine").build(parent, None, BuildContext(workdir=tmp_path))


def test_sharded_work_resumes_from_finished_shards(parent, tmp_path):
    calls = []

    def fn(items):
        calls.append(len(items))
        return [dict(r, completion=r["completion"] + "!") for r in items]

    items = parent.to_list() * 3                         # 9 rows, shards of 4: 4 + 4 + 1
    ctx = BuildContext(workdir=tmp_path)
    first = sharded(items, fn, ctx, size=4)
    (tmp_path / "shards" / "shard-00002.parquet").unlink()   # as if killed before the last shard
    again = sharded(items, fn, ctx, size=4)
    assert calls == [4, 4, 1, 1] and again.to_list() == first.to_list()


def test_raising_the_oracles_budget_keeps_the_shards_already_asked(parent, tmp_path):
    """traces_per_problem and max_per_problem choose rows, not answers: the first traces' shard
    (64 problems, one shard) is reused when a second trace per problem is added."""
    many = Dataset.from_list([dict(r, problem_id=f"p{i}", trace_id=f"p{i}#{r['sample_index']}")
                              for i in range(64) for r in parent], features=parent.features)
    oracle = Scripted(oracle_answer)
    one = get("oracle_refine").build(many, OracleRefineConfig(traces_per_problem=1, max_per_problem=1),
                                     ctx_with(tmp_path, oracle=oracle))
    assert len(oracle.requests) == 64 and len(one) == 64
    oracle = Scripted(oracle_answer)
    two = get("oracle_refine").build(many, OracleRefineConfig(traces_per_problem=2, max_per_problem=2),
                                     ctx_with(tmp_path, oracle=oracle))
    assert len(oracle.requests) == 64                    # only the second traces were asked
    assert all("p" in r.prompt and TRACES["slip"] in r.prompt for r in oracle.requests)
    assert len(two) == 64 and set(two["parent_id"]) == set(one["parent_id"])   # near-duplicates: one kept


def test_variant_command_with_the_reference_oracle(parent, tmp_path, capsys):
    from toolkit.cli import main
    from toolkit.io import load, save
    save(parent, tmp_path / "self")
    out = tmp_path / "synth"
    assert main(["oracle_synth", "--traces", str(tmp_path / "self"), "--out", str(out),
                 "--oracle-model", "reference", "--learner", "tiny-random"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["variant"], summary["rows"], summary["problems_solved"]) == ("oracle_synth", 1, 1)
    assert load(out)["completion"] == ["3 + 4 = 7. #### 7"]
    assert main(["oracle_refine", "--traces", str(tmp_path / "self"), "--out", str(tmp_path / "r"),
                 "--learner", "tiny-random"]) == 2
    assert "needs the model role 'oracle'" in capsys.readouterr().err


def test_variant_command_counts_the_learners_tokens_as_qup_run_does(parent, tmp_path, capsys):
    """`qup <variant>` counts completion tokens with the SLM's tokenizer (default: the one that
    wrote the parent traces), not whitespace words."""
    from toolkit.cli import main
    from toolkit.io import load, save
    from toolkit.models import load_tokenizer
    save(parent.map(lambda r: {"model_id": "qup/tiny-random-llama"}), tmp_path / "self")
    assert main(["oracle_synth", "--traces", str(tmp_path / "self"), "--out", str(tmp_path / "synth"),
                 "--oracle-model", "reference"]) == 0
    text = "3 + 4 = 7. #### 7"
    tokens = len(load_tokenizer("tiny-random")(text, add_special_tokens=False)["input_ids"])
    assert load(tmp_path / "synth")["completion_tokens"] == [tokens] != [len(text.split())]
    save(parent.map(lambda r: {"model_id": ""}), tmp_path / "anon")     # no SLM named: say so
    assert main(["oracle_synth", "--traces", str(tmp_path / "anon"), "--out", str(tmp_path / "x"),
                 "--oracle-model", "reference"]) == 2
    assert "oracle_synth: --learner is required" in capsys.readouterr().err


def test_a_rebuild_with_another_oracle_redoes_every_shard(parent, tmp_path, caplog):
    first = get("oracle_synth").build(parent, OracleSynthConfig(k=1), ctx_with(tmp_path, oracle=Scripted(oracle_answer)))
    other = Scripted(lambda p, r: "4 + 3 = 7, so 7 apples. The answer is: 7", model_id="test/other-oracle")
    with caplog.at_level("WARNING", logger="toolkit.resume"):
        again = get("oracle_synth").build(parent, OracleSynthConfig(k=1), ctx_with(tmp_path, oracle=other))
    assert len(other.requests) == 1 and "removed, redoing" in caplog.text
    assert again["oracle_model_id"] == ["test/other-oracle"] != first["oracle_model_id"]
    assert again["completion"] == ["4 + 3 = 7, so 7 apples. The answer is: 7"]


def test_a_rebuild_from_other_parent_rows_uses_those_rows(parent, tmp_path):
    reference = ReferenceOracle()
    get("oracle_synth").build(parent, None, ctx_with(tmp_path, oracle=reference))
    changed = parent.map(lambda r: {"problem_id": "p2", "gold_solution": "4 + 3 = 7. #### 7"})
    again = get("oracle_synth").build(changed, None, ctx_with(tmp_path, oracle=reference))
    assert again["problem_id"] == ["p2"] and again["completion"] == ["4 + 3 = 7. #### 7"]
