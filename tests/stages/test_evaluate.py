"""evaluate: greedy pass@1 with and without an adapter; the adapter is really applied."""
import json

import pytest

from toolkit.config import ConfigError
from toolkit.stages.evaluate import EvaluateConfig, evaluate_command
from toolkit.io import load
from toolkit.sources import SourceConfig


@pytest.fixture(scope="module")
def random_adapter(tiny_model, tmp_path_factory):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    out = tmp_path_factory.mktemp("adapter")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(out)
    return str(out)


def test_adapter_changes_evaluation_outputs(tiny_model, random_adapter, shared_data, tmp_path):
    common = dict(model=tiny_model, problems=SourceConfig(source="svamp", limit=4), max_new_tokens=12,
                  batch_size=4)
    base = evaluate_command(EvaluateConfig(**common, out=str(tmp_path / "base")))
    tuned = evaluate_command(EvaluateConfig(**common, adapter=random_adapter, out=str(tmp_path / "a")))
    base_rows, tuned_rows = load(tmp_path / "base"), load(tmp_path / "a")
    assert base_rows["problem_id"] == tuned_rows["problem_id"] and len(base_rows) == 4
    assert base_rows["completion"] != tuned_rows["completion"]  # the adapter is not ignored
    again = evaluate_command(EvaluateConfig(**common, out=str(tmp_path / "b")))
    assert load(tmp_path / "b")["completion"] == base_rows["completion"]  # greedy is deterministic
    for m, rows in ((base, base_rows), (tuned, tuned_rows)):
        assert m["total"] == 4 and m["correct"] == sum(rows["correct"])
        assert m["accuracy"] == m["correct"] / 4
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["adapter"] == random_adapter
    assert again["accuracy"] == base["accuracy"]


def test_missing_fields_are_named():
    with pytest.raises(ConfigError, match="'source' and 'out' are required"):
        evaluate_command(EvaluateConfig(problems=SourceConfig(source="svamp")))


def test_a_longer_list_decodes_only_the_chunks_it_has_not_seen(tiny_model, random_adapter, shared_data,
                                                               tmp_path):
    cache = tmp_path / "cache"
    common = dict(model=tiny_model, adapter=random_adapter, max_new_tokens=8, batch_size=2,
                  cache_dir=str(cache))

    def run(limit, out, **kw):
        evaluate_command(EvaluateConfig(**{**common, **kw}, problems=SourceConfig(source="svamp", limit=limit),
                                        out=str(tmp_path / out)))
        return load(tmp_path / out)

    def chunks():
        return {str(p.relative_to(cache)): p.stat().st_mtime_ns for p in cache.rglob("chunk-*.parquet")}
    short = run(5, "short")
    before = chunks()
    assert len(before) == 3                                    # [0, 1] [2, 3] [4]
    longer = run(8, "long")
    after = chunks()
    assert len(after) == 5                                     # + [4, 5] [6, 7]; [4] alone is another chunk
    assert all(after[name] == mtime for name, mtime in before.items())   # not decoded again
    assert longer.to_list()[:4] == short.to_list()[:4]
    fresh = run(8, "fresh", cache_dir="")                      # no cache: the very same outputs
    assert fresh.to_list() == longer.to_list()
    run(8, "base", adapter="")                                 # another model: its own chunks
    assert len(chunks()) == 9 and len(list(cache.iterdir())) == 2


def test_a_retrained_adapter_in_the_same_dir_does_not_reuse_chunks(tiny_model, random_adapter, shared_data,
                                                                   tmp_path):
    import shutil

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    adapter, cache = tmp_path / "adapter", tmp_path / "cache"
    shutil.copytree(random_adapter, adapter)
    cfg = dict(model=tiny_model, adapter=str(adapter), max_new_tokens=6, batch_size=4, cache_dir=str(cache),
               problems=SourceConfig(source="svamp", limit=4))
    evaluate_command(EvaluateConfig(**cfg, out=str(tmp_path / "first")))
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),   # "retrained": new weights
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(adapter)
    evaluate_command(EvaluateConfig(**cfg, out=str(tmp_path / "second")))
    assert len(list(cache.iterdir())) == 2                     # a second fingerprint, decoded afresh


def test_a_chunk_of_the_same_ids_with_other_problem_rows_is_redone(tiny_model, tmp_path, caplog):
    """The cache is keyed by the problems' rows, not only their ids: a corrected gold answer is
    graded again, never served from the chunk graded against the old one."""
    path = tmp_path / "probs.jsonl"

    def run(gold, out):
        rows = [{"id": f"q{i}", "question": f"What is {i} + 1?", "answer": f"#### {g}"} for i, g in enumerate(gold)]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        evaluate_command(EvaluateConfig(model=tiny_model, problems=SourceConfig(source=str(path), split="test"),
                                        max_new_tokens=4, batch_size=2, cache_dir=str(tmp_path / "cache"),
                                        out=str(tmp_path / out)))
        return load(tmp_path / out)[:]
    first = run(["1", "2", "3"], "a")
    with caplog.at_level("WARNING", logger="toolkit.resume"):
        again = run(["1", "2", "4"], "b")
    assert again["gold_answer"] == ["1", "2", "4"] != first["gold_answer"]
    assert again["completion"] == first["completion"]                     # the same greedy texts
    assert caplog.text.count("other input rows; removed, redoing") == 1   # only the chunk holding q2
