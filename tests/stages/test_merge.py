"""Sharded sampling (``qup sample --shard i/N``) + ``qup merge`` equals unsharded sampling row
for row; merge refuses a missing, duplicated or differently-configured shard; the union is
published as one commit."""
from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import ALICE
from toolkit.cli import main
from toolkit.io import load
from toolkit.stages.merge import MergeError, merge

N = 3
# 8 problems x k=2 in 4 chunks of 2 (decoded together, in mixed batches): chunk c goes to shard
# c mod 3, so shard 0 holds chunks 0 and 3
SAMPLE = ["sample", "--source", "svamp", "--offset", "21", "--limit", "8", "--k", "2",
          "--max-new-tokens", "10", "--temperature", "1.0", "--transformers-batch-size", "16", "--shard-size", "2",
          "--dtype", "bfloat16"]


def run(argv, capsys) -> dict:
    assert main(argv) == 0, capsys.readouterr().err[-2000:]
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sampled(tiny_model, shared_data, tmp_path_factory):
    """Unsharded and 3-sharded samples of the same problems."""
    root = tmp_path_factory.mktemp("sharded")
    argv = SAMPLE + ["--model", tiny_model]
    assert main(argv + ["--out", str(root / "whole")]) == 0
    for i in range(N):
        assert main(argv + ["--out", str(root / f"s{i}"), "--shard", f"{i}/{N}"]) == 0
    return root


def test_sharded_sample_merged_equals_unsharded(sampled, capsys):
    sizes = [len(load(sampled / f"s{i}")) for i in range(N)]
    assert sizes == [8, 4, 4]                                   # a real split, nothing lost
    out = run(["merge", *(str(sampled / f"s{i}") for i in (2, 0, 1)), "--out", str(sampled / "merged")],
              capsys)
    assert out["shards"] == N and out["rows"] == 16 and out["problems"] == 8
    whole, merged = load(sampled / "whole"), load(sampled / "merged")
    assert merged.features == whole.features
    assert merged.to_list() == whole.to_list()                 # every column, every row, in order
    marker = json.loads((sampled / "s1" / "qup_shard.json").read_text())
    assert marker["shard"] == "1/3" and marker["stage"] == "sample" and marker["config"]["k"] == 2


def test_merge_refuses_missing_and_duplicated_shards(sampled, tmp_path):
    dirs = [sampled / f"s{i}" for i in range(N)]
    with pytest.raises(MergeError, match=r"shard\(s\) 2/3 missing \(have 0/3, 1/3\)"):
        merge(dirs[:2])
    copy = tmp_path / "s1-again"
    shutil.copytree(dirs[1], copy)
    with pytest.raises(MergeError, match=r"shard 1/3 is given twice"):
        merge([*dirs, copy])
    with pytest.raises(MergeError, match="is not a shard output"):
        merge([*dirs, sampled / "whole"])


def test_merge_refuses_tampered_or_mixed_shards(sampled, tmp_path, tiny_model, capsys):
    dirs = [tmp_path / f"s{i}" for i in range(N)]
    for src, dst in zip([sampled / f"s{i}" for i in range(N)], dirs):
        shutil.copytree(src, dst)
    # a shard made with another setting
    other = tmp_path / "other1"
    assert main(SAMPLE + ["--model", tiny_model, "--max-new-tokens", "4",
                          "--out", str(other), "--shard", "1/3"]) == 0
    with pytest.raises(MergeError, match=r"different configs \(field\(s\) \['max_new_tokens'\]\)"):
        merge([dirs[0], other, dirs[2]])
    # a problem claimed by a shard it does not hash to
    path = dirs[0] / "qup_shard.json"
    marker = json.loads(path.read_text())
    theirs = json.loads((dirs[1] / "qup_shard.json").read_text())
    stolen = theirs["problems"][0]
    path.write_text(json.dumps({**marker, "problems": marker["problems"] + [stolen],
                                "chunks": {**marker["chunks"], stolen: theirs["chunks"][stolen]}}))
    with pytest.raises(MergeError, match=f"holds problem '{stolen}', which belongs to shard 1/3"):
        merge(dirs)
    path.write_text(json.dumps({**marker, "rows": marker["rows"] + 1}))
    with pytest.raises(MergeError, match=r"holds \d+ rows but its qup_shard.json says"):
        merge(dirs)
    # the CLI prints one line, no traceback
    assert main(["merge", str(dirs[0]), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("qup: error: merge: shard(s) 1/3, 2/3 missing")
    assert "Traceback" not in err


def test_merge_publishes_the_union_in_one_commit(sampled, hub, api, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", ALICE)
    out = run(["merge", *(str(sampled / f"s{i}") for i in range(N)), "--out", str(tmp_path / "m"),
               "--publish", "alice/merged-samples", "--hub-url", hub.url], capsys)
    pub = out["published"]
    assert pub["config"] == "self" and pub["created_commit"] and pub["tag"] == "v1"
    commits = api.list_repo_commits("alice/merged-samples", repo_type="dataset")
    assert commits[0].commit_id == pub["commit_sha"] and len(commits) <= 2   # creation + the publish
    files = [f for f in api.list_repo_files("alice/merged-samples", repo_type="dataset")
             if f.startswith("self/")]
    import pyarrow.parquet as pq
    rows = []
    for f in sorted(files):
        rows += pq.read_table(api.hf_hub_download("alice/merged-samples", f, repo_type="dataset")).to_pylist()
    assert sorted(r["trace_id"] for r in rows) == sorted(load(sampled / "whole")["trace_id"])


def test_sharded_score_merged_equals_unsharded(sampled, tiny_model, tmp_path, capsys):
    # learner NLL and drift against the SLM's other samples: both read only the row's own problem
    argv = ["score", "--data", str(sampled / "whole"), "--reference", str(sampled / "whole"),
            "--learner-model", tiny_model, "--reward", "none", "--embedder", "", "--learner-dtype", "float32"]
    run(argv + ["--out", str(tmp_path / "whole")], capsys)
    for i in range(2):
        out = run(argv + ["--out", str(tmp_path / f"s{i}"), "--shard", f"{i}/2"], capsys)
        assert 0 < out["rows"] < 16
    run(["merge", str(tmp_path / "s1"), str(tmp_path / "s0"), "--out", str(tmp_path / "merged")], capsys)
    whole, merged = load(tmp_path / "whole"), load(tmp_path / "merged")
    assert merged["trace_id"] == whole["trace_id"] and merged["ngram_overlap"] == whole["ngram_overlap"]
    assert merged["nll"] == pytest.approx(whole["nll"], rel=1e-5)   # batched forward passes differ
    assert None not in merged["nll"] and None not in merged["length_ratio"]


def test_sharded_variant_command_merged_equals_unsharded(tmp_path, capsys):
    # the dataset's own worked solutions as Oracle: no model, the variant's sharding alone
    from datasets import Dataset

    from toolkit.schema import TRACE, empty_trace
    rows = []
    for p in range(12):
        for j in range(2):
            row = empty_trace()
            row.update(id=f"toy-{p}", problem_id=f"toy-{p}", trace_id=f"toy-{p}#{j}", sample_index=j,
                       question=f"What is {p} + 4?", gold_answer=str(p + 4), prompt_id="math_cot",
                       gold_solution=f"{p} + 4 = {p + 4}. #### {p + 4}", completion="no idea",
                       variant="self")
            rows.append(row)
    Dataset.from_list(rows, features=TRACE).save_to_disk(str(tmp_path / "self"))
    argv = ["oracle_synth", "--traces", str(tmp_path / "self"), "--oracle-model", "reference", "--learner", "tiny-random"]
    run(argv + ["--out", str(tmp_path / "whole")], capsys)
    for i in range(N):
        assert run(argv + ["--out", str(tmp_path / f"s{i}"), "--shard", f"{i}/{N}"], capsys)["rows"] > 0
    run(["merge", *(str(tmp_path / f"s{i}") for i in range(N)), "--out", str(tmp_path / "m")], capsys)
    whole = load(tmp_path / "whole")
    assert len(whole) == 12 and load(tmp_path / "m").to_list() == whole.to_list()
    marker = json.loads((tmp_path / "s0" / "qup_shard.json").read_text())
    assert marker["stage"] == "oracle_synth" and marker["config"]["roles"] == {"oracle": {"model": "reference",
                                                                                      "dtype": "auto"}}


def _toy_shards(root, capsys, n=2) -> list:
    """``n`` oracle_synth shards (reference Oracle: no model) of 6 toy problems x 2 traces."""
    from datasets import Dataset

    from toolkit.schema import TRACE, empty_trace
    rows = [{**empty_trace(), "id": f"toy-{p}", "problem_id": f"toy-{p}", "trace_id": f"toy-{p}#{j}",
             "sample_index": j, "question": f"What is {p} + 4?", "gold_answer": str(p + 4),
             "prompt_id": "math_cot", "gold_solution": f"{p} + 4 = {p + 4}. #### {p + 4}",
             "completion": "no idea", "variant": "self"} for p in range(6) for j in range(2)]
    Dataset.from_list(rows, features=TRACE).save_to_disk(str(root / "self"))
    argv = ["oracle_synth", "--traces", str(root / "self"), "--oracle-model", "reference", "--learner", "tiny-random"]
    for i in range(n):
        run(argv + ["--out", str(root / f"s{i}"), "--shard", f"{i}/{n}"], capsys)
    return [root / f"s{i}" for i in range(n)]


def _merge_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("qup: error: "), err
    return lines[0]


BAD_MARKERS = {"a list": ([], "expected a JSON object"), "count": ({"count": "2"}, "field 'count' must be a JSON int"),
               "index": ({"index": 7}, "out of range"), "rows": ({"rows": None}, "field 'rows' must be a JSON int"),
               "problems": ({"problems": [1, 2]}, "'problems' must be a list of strings"),
               "order": ({"order": {"toy-0#0": "first"}}, "'order' must map keys to integer positions"),
               "chunks": ({"chunks": 3}, "'chunks' must be a JSON object"),
               "config": ({"config": "x"}, "field 'config' must be a JSON dict"),
               "huge count": ({"count": 10 ** 12}, "missing"), "not utf-8": (b"\xff{", "not valid JSON")}


def test_damaged_shard_dirs_and_bad_out_are_one_line(tmp_path, capsys):
    shards = _toy_shards(tmp_path, capsys)
    for what, (change, words) in BAD_MARKERS.items():
        bad = tmp_path / f"bad-{what.replace(' ', '-')}"
        shutil.copytree(shards[0], bad)
        marker = json.loads((bad / "qup_shard.json").read_text())
        data = change if isinstance(change, bytes) else json.dumps(
            {**marker, **change} if isinstance(change, dict) else change).encode()
        (bad / "qup_shard.json").write_bytes(data)
        line = _merge_error(["merge", str(bad), "--out", str(tmp_path / "m")], capsys)
        assert words in line, (what, line)
    truncated = tmp_path / "truncated"
    shutil.copytree(shards[0], truncated)
    [arrow] = (truncated / "data").glob("*.arrow")
    arrow.write_bytes(arrow.read_bytes()[:200])
    line = _merge_error(["merge", str(truncated), str(shards[1]), "--out", str(tmp_path / "m")], capsys)
    assert f"{truncated}: cannot read the shard's data" in line
    (tmp_path / "file").write_text("x")
    for out, words in ((shards[0], "is (inside) the shard dir"), (shards[1] / "sub", "is (inside) the shard dir"),
                       (tmp_path / "file", "exists and is not a directory")):
        assert words in _merge_error(["merge", *map(str, shards), "--out", str(out)], capsys)
    assert (tmp_path / "file").read_text() == "x" and not (tmp_path / "m").exists()
    assert run(["merge", *map(str, shards), "--out", str(tmp_path / "m")], capsys)["rows"] == 6
