"""``qup run``: the whole loop through the CLI, cache keys that chain through inputs, and a toy
variant that shows up everywhere from one registry entry."""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from datasets import Dataset

from toolkit import variants
from toolkit.io import load

QUP = [sys.executable, "-m", "toolkit.cli"]


def _env(**extra):
    return {**{k: v for k, v in os.environ.items() if not k.startswith("HF_")}, **extra}


def test_qup_run_smoke_end_to_end(tmp_path, shared_data, tiny_model):
    run_dir = tmp_path / "smoke"
    env = _env()
    cmd = QUP + ["run", "smoke", "--run-dir", str(run_dir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(summary["evaluations"]) == {"base", "self"}
    assert summary["evaluations"]["base"]["total"] == 8
    assert summary["data"]["self"]["rows"] == 16  # 8 problems x k=2
    # Every stage left its output.
    assert len(load(run_dir / "samples")) == 16
    assert set(load(run_dir / "variants" / "self")["verify_status"]) <= {"correct", "wrong", "no_answer", "timeout"}
    assert (run_dir / "adapters" / "self" / "adapter_model.safetensors").is_file()
    assert len(load(run_dir / "eval" / "self")) == 8
    report = (run_dir / "report.md").read_text()
    assert "| base |" in report and "0 / 8" in report and (run_dir / "report.png").stat().st_size > 1000
    # Scored before training: every row has a judge reward in [0, 1], an NLL and drift figures.
    scored = load(run_dir / "scores" / "self")
    assert len(scored) == 16 and set(scored["reward_kind"]) == {"judge"}
    assert all(0 <= r <= 1 for r in scored["reward"]) and all(n > 0 for n in scored["nll"])
    assert all(t >= 1 for t in scored["nll_tokens"]) and None not in scored["ngram_overlap"]
    diag = summary["diagnostics"]["self"]
    assert diag["reward"]["n"] == 16 and diag["nll"]["lo"] <= diag["nll"]["mean"] <= diag["nll"]["hi"]
    assert "Before training" in report and (run_dir / "diagnostics.png").stat().st_size > 1000
    # Published to the embedded Hub; the report lists repos and revisions.
    repos = {p["repo"]: p["revision"] for p in summary["published"]}
    assert repos == {"qup/qup-svamp-tiny-random-llama": "v1",
                     "qup/qup-svamp-tiny-random-llama-self-lora": "v1"}
    assert "`qup/qup-svamp-tiny-random-llama-self-lora` | `v1`" in report
    # The embedded Hub's data survives the run: serve it again and load a variant at its tag.
    from toolkit.hub import HubServer
    with HubServer(run_dir / "hub") as hub:
        code = ("from datasets import load_dataset; ds = load_dataset("
                "'qup/qup-svamp-tiny-random-llama', 'self', revision='v1', split='train'); "
                "print(len(ds), ds[0]['trace_id'], ds[0]['nll'] > 0)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                             env=env | dict(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1",
                                            HF_HOME=str(tmp_path / "hf")))
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.split()[0] == "16" and out.stdout.split()[2] == "True"   # scores published
        card = HfApi(endpoint=hub.url).hf_hub_download  # the card's statistics have the intervals
        readme = Path(card("qup/qup-svamp-tiny-random-llama", "README.md", repo_type="dataset",
                           revision="v1", cache_dir=tmp_path / "hf")).read_text()
        assert "perceived quality" in readme and "judge: qup/tiny-random-llama@seed0" in readme
    # A second run finds every step done and redoes nothing.
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stderr.count("done already") == 6, again.stderr[-2000:]   # score:self included
    assert "generate:" not in again.stderr


# --------------------------------------------------------------- a toy variant: one module + one entry
def shortest(parent: Dataset, config=None, ctx=None) -> Dataset:
    """The shortest `self` trace of each problem."""
    best: dict[str, tuple[int, int]] = {}
    for i, (pid, n) in enumerate(zip(parent["problem_id"], parent["completion_tokens"])):
        if pid not in best or n < best[pid][0]:
            best[pid] = (n, i)
    keep = sorted(i for _, i in best.values())
    return parent.select(keep).map(lambda r: {"variant": "shortest", "parent_id": r["trace_id"]})


@pytest.fixture
def toy_variant():
    v = variants.register(variants.Variant("shortest", "self", "the shortest SLM trace per problem",
                                           shortest))
    yield v
    del variants.REGISTRY["shortest"]


def test_toy_variant_and_upstream_changes_flow_downstream(tmp_path, shared_data, tiny_model, toy_variant):
    from huggingface_hub import DatasetCard, hf_hub_download

    from toolkit.hub import HubServer
    from toolkit.run import run_recipe

    run_dir = tmp_path / "run"
    first = run_recipe("smoke", {"variants": ["shortest"]}, run_dir=str(run_dir))
    assert list(first["data"]) == ["self", "shortest"]          # the lineage, parents first
    assert first["data"]["shortest"]["rows"] == first["data"]["shortest"]["problems"] == 8
    assert set(first["evaluations"]) == {"base", "shortest"}
    assert "| shortest | the shortest SLM trace per problem | 8 |" in (run_dir / "report.md").read_text()
    dataset = first["published"][0]
    assert dataset["what"] == "dataset (self, shortest)" and dataset["revision"] == "v1"
    with HubServer(run_dir / "hub") as hub:
        readme = hf_hub_download(dataset["repo"], "README.md", repo_type="dataset", revision="v1",
                                 endpoint=hub.url, cache_dir=tmp_path / "hf")
        card = DatasetCard.load(readme)
        assert [c["config_name"] for c in card.data.configs] == ["self", "shortest"]
        assert "the shortest SLM trace per problem" in card.text

    # The README's example after `make demo`: change sampling, re-run. Everything downstream of
    # `sample` re-runs (no stale data, no shard error); the base evaluation does not depend on it.
    second = run_recipe("smoke", {"variants": ["shortest"], "sample": {"k": 3}}, run_dir=str(run_dir))
    assert len(load(run_dir / "samples")) == 24
    assert second["data"]["self"]["rows"] == 24 and second["data"]["shortest"]["rows"] == 8
    changed = {k for k in first["keys"] if first["keys"][k] != second["keys"][k]}
    assert changed == {"sample", "variant:self", "variant:shortest", "score:self", "score:shortest",
                       "train:shortest", "evaluate:shortest"}
    assert second["published"][0]["revision"] == "v2"
    train_info = json.loads((run_dir / "adapters" / "shortest" / "qup_train.json").read_text())
    assert (train_info["dataset_revision"], train_info["dataset_config"]) == ("v2", "shortest")
    assert train_info["metrics"]["train_samples"] == 8 and train_info["metrics"]["steps"] == 4

    # A change of the problem slice flows the same way (it used to re-run `sample` only).
    third = run_recipe("smoke", {"variants": ["shortest"], "sample": {"k": 3},
                                 "train_problems": {"limit": 4}}, run_dir=str(run_dir))
    assert third["data"]["self"]["rows"] == 12 and third["data"]["shortest"]["problems"] == 4
    assert len(load(run_dir / "variants" / "shortest")) == 4
    assert {k for k in third["keys"] if third["keys"][k] != second["keys"][k]} == changed

    # Scoring is not training: a change of the score config re-scores, and retrains nothing.
    fourth = run_recipe("smoke", {"variants": ["shortest"], "sample": {"k": 3}, "score": {"embedder": ""},
                                  "train_problems": {"limit": 4}}, run_dir=str(run_dir))
    assert {k for k in fourth["keys"] if fourth["keys"][k] != third["keys"][k]} == {"score:self", "score:shortest"}
    assert set(load(run_dir / "scores" / "shortest")["embed_cosine"]) == {None}
    assert fourth["diagnostics"]["shortest"]["embed_cosine"]["n"] == 0

    # A variant whose build changed (its version bumped) is rebuilt with everything downstream.
    variants.REGISTRY["shortest"] = dataclasses.replace(toy_variant, version=2)
    fifth = run_recipe("smoke", {"variants": ["shortest"], "sample": {"k": 3}, "score": {"embedder": ""},
                                 "train_problems": {"limit": 4}}, run_dir=str(run_dir))
    assert {k for k in fifth["keys"] if fifth["keys"][k] != fourth["keys"][k]} == {
        "variant:shortest", "score:shortest", "train:shortest", "evaluate:shortest"}


def _one_line_error(proc) -> str:
    """The error line of a failed ``qup`` call: exit code 2, no traceback (logs may precede it)."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines[-1].startswith("qup: error: ") and sum("error" in ln for ln in lines) == 1, lines
    return lines[-1]


def test_bad_recipe_key_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntrain_problems: {source: svamp}\neval_problems: {source: svamp}\n"
                   "sample: {temprature: 0.5}\n")
    proc = subprocess.run(QUP + ["run", str(bad)], capture_output=True, text=True, timeout=120)
    assert "unknown key(s) ['temprature']" in _one_line_error(proc)
    proc = subprocess.run(QUP + ["run", "smoke", "--set", "evaluate.prompt=other"],
                          capture_output=True, text=True, timeout=120)
    assert "evaluate.prompt is set by the run" in _one_line_error(proc)


def test_hub_url_without_token_fails_before_any_work(tmp_path):
    proc = subprocess.run(QUP + ["run", "smoke", "--run-dir", str(tmp_path / "r"),
                                 "--set", "hub.url=http://127.0.0.1:9"],
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert "HF_TOKEN is not set" in _one_line_error(proc)
    assert not (tmp_path / "r").exists()


def test_dead_endpoint_is_one_line(tmp_path, free_port, shared_data):   # --source svamp
    proc = subprocess.run(QUP + ["sample", "--model", "tiny-random", "--source", "svamp", "--limit", "1",
                                 "--k", "1", "--backend", "endpoint", "--endpoint-urls",
                                 f"http://127.0.0.1:{free_port}", "--endpoint-retries", "0",
                                 "--out", str(tmp_path / "s")],
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert "endpoint request failed" in _one_line_error(proc)


def test_oracle_variants_in_a_run_with_the_reference_oracle(tmp_path, shared_data, tiny_model):
    """oracle_synth from the dataset's own solutions goes through train, evaluate and publishing;
    the card names the Oracle; variants the recipe does not list are not built; `unscored: [self]`
    builds the SLM's traces without scoring them; `max_rows` keeps a seeded subset of a trained one."""
    from huggingface_hub import DatasetCard, hf_hub_download

    from toolkit.config import ConfigError
    from toolkit.hub import HubServer
    from toolkit.run import run_recipe

    run_dir = tmp_path / "run"
    over = {"variants": ["oracle_synth"], "oracle": {"model": "reference"}, "unscored": ["self"], "max_rows": 3,
            "train_problems": {"source": "gsm8k", "split": "train", "limit": 4}}
    with pytest.raises(ConfigError, match="unscored: 'oracle_synth' must be a built variant that is neither"):
        run_recipe("smoke", {**over, "unscored": ["oracle_synth"]}, run_dir=str(run_dir))
    summary = run_recipe("smoke", over, run_dir=str(run_dir))
    assert list(summary["data"]) == ["self", "oracle_synth"]
    assert "scores" not in summary["data"]["self"] and summary["data"]["oracle_synth"]["scores"]
    assert not (run_dir / "scores" / "self").exists() and (run_dir / "scores" / "oracle_synth").exists()
    assert summary["diagnostics"]["self"]["rows"] == 8 and summary["diagnostics"]["self"]["nll"]["n"] == 0
    synth = load(run_dir / "variants" / "oracle_synth")
    assert len(synth) == 3 and all(synth["correct"]) and set(synth["mode"]) == {"reference"}
    assert summary["data"]["oracle_synth"]["counts"]["over_max_rows"] == 1
    assert summary["data"]["self"]["rows"] == 8                  # not trained: not capped
    assert set(summary["evaluations"]) == {"base", "oracle_synth"}
    with HubServer(run_dir / "hub") as hub:
        readme = hf_hub_download(summary["published"][0]["repo"], "README.md", repo_type="dataset",
                                 revision="v1", endpoint=hub.url, cache_dir=tmp_path / "hf")
    card = DatasetCard.load(readme)
    assert "**Oracle**: `reference (the dataset's own worked solutions)`" in card.text
    assert [c["config_name"] for c in card.data.configs] == ["oracle_synth", "self"]


def test_a_variant_that_needs_an_oracle_fails_before_any_work(tmp_path):
    proc = subprocess.run(QUP + ["run", "smoke", "--run-dir", str(tmp_path / "r"),
                                 "--set", "variants=[style_aligned]"],
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert "variant 'style_aligned' needs an Oracle" in _one_line_error(proc)
    assert not (tmp_path / "r").exists()


def test_model_oracle_variants_in_a_run(tmp_path, shared_data, tiny_model):
    """A real (tiny, random) Qwen2 plays the Oracle through the local engine: every Oracle variant
    is built, with its counts; the Oracle's own chat template (Qwen's default system prompt) is
    recorded; variants left with no rows are reported and not trained, the rest go on."""
    import pyarrow.parquet as pq

    from toolkit.run import run_recipe

    run_dir = tmp_path / "run"
    summary = run_recipe("smoke", {
        "variants": ["self", "oracle_refine", "style_aligned", "selected"], "judge": {"model": ""},
        "oracle": {"model": "tiny-random-qwen2"}, "train_problems": {"limit": 4},
        "oracle_refine": {"max_new_tokens": 16, "temperature": 1.0},
        "style_aligned": {"mode": "prefix", "max_new_tokens": 8, "continuations": 1},
        "selected": {"pool": ["self", "oracle_refine"], "correct_only": False, "lam": 1.0}}, run_dir=str(run_dir))
    assert list(summary["data"]) == ["self", "oracle_refine", "style_aligned", "selected"]
    shard = run_dir / "variants" / "oracle_refine" / "shards" / "shard-00000.parquet"
    asked = pq.read_table(shard).to_pydict()             # every Oracle answer, before verification
    counts = summary["data"]["oracle_refine"]["counts"]
    assert len(asked["trace_id"]) + counts.get("oracle_empty", 0) == 8 and asked["trace_id"]
    assert all(p.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")
               for p in asked["oracle_prompt"])
    assert set(asked["oracle_model_id"]) == {"qup/tiny-random-qwen2"} and set(asked["mode"]) == {"refine"}
    trained = {v for v in ("self", "oracle_refine", "style_aligned", "selected") if summary["data"][v]["rows"]}
    assert set(summary["evaluations"]) == {"base"} | trained
    # The Oracle judges (no `judge` role); `selected` keeps one scored row per problem from its pool
    # (a random model is never right, hence correct_only: false here), λ recorded in each row.
    judged = load(run_dir / "scores" / "oracle_refine")
    assert set(judged["reward_model"]) <= {"qup/tiny-random-qwen2@seed0"}
    sel = load(run_dir / "variants" / "selected")
    assert len(sel) == 4 and len(set(sel["problem_id"])) == 4 and "selected" in trained
    assert {m.split("|", 1)[1] for m in sel["mode"]} == {"reward_nll|lambda=1"} and None not in sel["nll"]
    assert {m.split("|")[0] for m in sel["mode"]} <= {"self", "oracle_refine"}
    report = (run_dir / "report.md").read_text()
    assert "| oracle_refine |" in report and "| style_aligned |" in report
