"""Publishing datasets and adapters to the local Hub server over real HTTP; loads in subprocesses."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from datasets import Dataset, Features, Value
from huggingface_hub import DatasetCard, ModelCard

from toolkit.publishing.cards import scrub, scrub_text
from toolkit.publishing.publish import MANIFEST, PublishError, publish_adapter, publish_dataset
from toolkit.prompts import load_prompt
from toolkit.schema import TRACE, empty_trace

from ..conftest import ALICE, BOB

REPO = "alice/qup-svamp-tiny"
PROMPT = load_prompt("math_cot")
PROVENANCE = {
    "slm": {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "revision": "main"},
    "oracle": {"model": "Qwen/Qwen2.5-7B-Instruct", "revision": "a09a3545",
               "endpoint": "https://bob:s3cret@tgi.corp.example:8443/v1?api_key=hf_leakedkey12345"},
    "engine": "tgi endpoint",
    "hf_token": ALICE,
    "note": f"sampled with HF_TOKEN={ALICE} against http://10.1.2.3:8080/generate?token=abc",
    "filters": {"rft": {"keep": "correct", "max_per_problem": 2, "pass_rate": 0.5}},
}
SOURCE = {"dataset": "ChilleD/SVAMP", "revision": "4a1c3a2", "license": "mit"}
SECRETS = (ALICE, "s3cret", "hf_leakedkey12345", "tgi.corp.example", "10.1.2.3", "token=abc")


def traces(variant: str, n_problems: int, k: int, diagnostics: bool = False) -> Dataset:
    rows = []
    for p in range(n_problems):
        for i in range(k):
            row = empty_trace()
            row.update(id=f"svamp/test/{p}", question=f"Tom has {p} apples and buys {i}. How many?",
                       gold_answer=str(p + i), source="svamp", split="test",
                       problem_id=f"svamp/test/{p}", trace_id=f"svamp/test/{p}#{i}", sample_index=i,
                       seed=1000 * p + i, model_id="HuggingFaceTB/SmolLM2-135M-Instruct",
                       model_revision="main", prompt_id=PROMPT.id,
                       params='{"max_new_tokens": 256, "temperature": 0.7}',
                       completion=f"{p} + {i} = {p + i}. The answer is \\boxed{{{p + i}}}. [{variant}]",
                       completion_tokens=10 + p + i, finish_reason="stop", answer=str(p + i),
                       correct=(p + i) % 3 != 0, variant=variant)
            row["verify_status"] = "correct" if row["correct"] else "wrong"
            if diagnostics:
                row.update(reward=0.25 * i, nll=1.5 + 0.1 * p)
            rows.append(row)
    feats = Features({**TRACE, "reward": Value("float32"), "nll": Value("float64")}) if diagnostics \
        else TRACE
    return Dataset.from_list(rows, features=feats)


def run_client(env: dict, code: str, args) -> dict:
    """Run ``code`` in a fresh interpreter (huggingface_hub reads HF_ENDPOINT at import)."""
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


LOAD = """
import json, sys
from datasets import load_dataset
out = {}
for config, revision in json.loads(sys.argv[1])["loads"]:
    ds = load_dataset("%s", config, revision=revision, split="train")
    out[f"{config}@{revision}"] = ds.to_list()
snippet = json.loads(sys.argv[1])["snippet"]
scope = {}
exec(snippet, scope)   # the card's own "how to load" code
out["snippet"] = scope["ds"].to_list()
print(json.dumps(out))
""" % REPO


def readme(api, repo_id, revision, repo_type="dataset") -> str:
    path = api.hf_hub_download(repo_id, "README.md", repo_type=repo_type, revision=revision)
    return open(path).read()


def test_variants_as_configs_round_trip(hub, api, client_env, monkeypatch):
    self_ds, rft_ds = traces("self", 4, 3), traces("rft", 4, 2, diagnostics=True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    first = publish_dataset(REPO, {"self": self_ds, "rft": rft_ds}, token=ALICE, endpoint=hub.url,
                            provenance=PROVENANCE, source_info=SOURCE)
    assert first.created_commit and first.tag == "v1" and len(first.commit_sha) == 40
    assert api.dataset_info(REPO, revision="v1").sha == first.commit_sha
    n_commits = len(api.list_repo_commits(REPO, repo_type="dataset"))

    # identical data: no commit, same sha and tag
    again = publish_dataset(REPO, {"self": self_ds, "rft": rft_ds}, token=ALICE, endpoint=hub.url,
                            provenance=PROVENANCE, source_info=SOURCE)
    assert (again.commit_sha, again.tag, again.created_commit) == (first.commit_sha, "v1", False)
    assert len(api.list_repo_commits(REPO, repo_type="dataset")) == n_commits

    # a later variant keeps the earlier ones
    synth = traces("oracle_synth", 3, 1)
    third = publish_dataset(REPO, {"oracle_synth": synth}, token=ALICE, endpoint=hub.url)
    assert third.created_commit and third.tag == "v2" and third.commit_sha != first.commit_sha
    card = readme(api, REPO, "v2")
    snippet = re.search(r"```python\n(.*?)```", card.split("## How to load")[1], re.S).group(1)
    assert re.search(rf'load_dataset\("{REPO}", "rft", revision="v2"', snippet)

    client_env["HF_TOKEN"] = BOB   # reading needs only a read token
    loads = [["self", "v1"], ["rft", "v1"], ["self", "v2"], ["rft", "v2"], ["oracle_synth", "v2"]]
    got = run_client(client_env, LOAD, {"loads": loads, "snippet": snippet})
    expect = {"self": self_ds.to_list(), "rft": rft_ds.to_list(), "oracle_synth": synth.to_list()}
    for config, revision in loads:
        assert got[f"{config}@{revision}"] == expect[config], (config, revision)
    assert got["snippet"] == expect["rft"]


def test_card_metadata_stats_and_no_secrets(hub, api):
    rft = traces("rft", 4, 2, diagnostics=True)
    publish_dataset(REPO, {"self": traces("self", 4, 3), "rft": rft},
                    token=ALICE, endpoint=hub.url, provenance=PROVENANCE, source_info=SOURCE)
    text = readme(api, REPO, "v1")
    data = DatasetCard(text).data
    assert {c["config_name"]: c["data_files"][0]["path"] for c in data.configs} == \
        {"self": "self/train-*.parquet", "rft": "rft/train-*.parquet"}
    assert data.license == "mit" and data.language == ["en"] and data.source_datasets == ["ChilleD/SVAMP"]
    assert "text-generation" in data.task_categories and "math" in data.tags
    assert data.size_categories == ["n<1K"] and data.pretty_name
    # stats table: rft has reward/nll means, self has none
    stats = text.split("## Statistics")[1].splitlines()
    header = next(line for line in stats if line.startswith("| config | rows"))
    assert header.endswith("| mean nll | mean reward |")
    rft_row = next(line for line in stats if line.startswith("| `rft` |"))
    cells = [float(c) for c in rft_row.strip("|").split("|")[1:]]
    df = rft.to_pandas()
    expect = [len(df), df.problem_id.nunique(), df.correct.mean(), df.completion_tokens.mean(),
              df.nll.mean(), df.reward.mean()]
    assert cells == pytest.approx(expect, rel=1e-3)
    for needle in ("Qwen/Qwen2.5-7B-Instruct", "a09a3545", PROMPT.id, PROMPT.text.strip(), "math-verify 0.",
                   '"max_new_tokens": 256', "tgi", "ChilleD/SVAMP", "4a1c3a2", "max_per_problem"):
        assert needle in text, needle
    # no secret in any file of the repo (parquet included)
    files = api.list_repo_files(REPO, repo_type="dataset", revision="v1")
    assert {"README.md", MANIFEST, "self/train-00000-of-00001.parquet"} <= set(files)
    for name in files:
        blob = open(api.hf_hub_download(REPO, name, repo_type="dataset", revision="v1"), "rb").read()
        for secret in SECRETS:
            assert secret.encode() not in blob, (name, secret)


def test_publish_errors_name_repo_not_token(hub, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    ds = traces("self", 2, 1)
    with pytest.raises(PublishError, match=r"no Hub token.*alice/nope"):
        publish_dataset("alice/nope", {"self": ds}, endpoint=hub.url)
    for token, status in ((BOB, "403"), ("hf_wrongtoken000", "401")):
        with pytest.raises(PublishError) as e:
            publish_dataset("alice/nope", {"self": ds}, token=token, endpoint=hub.url)
        assert "alice/nope" in str(e.value) and hub.url in str(e.value) and status in str(e.value)
        assert token not in str(e.value)
    monkeypatch.setenv("HF_TOKEN", ALICE)   # env token + explicit endpoint
    with pytest.raises(PublishError, match=r"variant rft: missing column\(s\) \['correct'\]"):
        publish_dataset("alice/nope", {"rft": ds.remove_columns("correct")}, endpoint=hub.url)
    with pytest.raises(PublishError, match="dataset dir .*missing not found"):
        publish_dataset("alice/nope", {"rft": tmp_path / "missing"}, endpoint=hub.url)
    leaky = Dataset.from_list([{**ds[0], "params": json.dumps({"token": ALICE})}], features=TRACE)
    with pytest.raises(PublishError, match="column 'params' contains the Hub token"):
        publish_dataset("alice/nope", {"self": leaky}, endpoint=hub.url)


def test_scrub_keeps_public_urls_drops_secrets():
    text = scrub_text(f"https://u:pw@huggingface.co/datasets/a/b?token=x#f, http://localhost:8080/v1, "
                      f"https://tgi.example.com/g, Bearer abc.def, {ALICE}x, max_new_tokens", (ALICE,))
    assert text == ("https://huggingface.co/datasets/a/b, <local endpoint>, <self-hosted endpoint>, "
                    "[redacted], [redacted], max_new_tokens")
    assert scrub({"hf_token": ALICE, "api_key": None, "max_new_tokens": 8, "n": [f"x {BOB}"]}) == \
        {"hf_token": "[redacted]", "api_key": None, "max_new_tokens": 8, "n": ["x [redacted]"]}


ADAPTER_CHECK = """
import json, sys, torch
from peft import PeftModel
from transformers import AutoModelForCausalLM
a = json.loads(sys.argv[1])
ids = torch.tensor([[1, 42, 7, 99, 5, 13]])
def logits(model):
    with torch.no_grad():
        return model(ids).logits
base = AutoModelForCausalLM.from_pretrained(a["base"])
plain = logits(base)
local = logits(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(a["base"]), a["local"]))
hubm = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(a["base"]), a["repo"],
                                 revision=a["revision"])
print(json.dumps({"hub_vs_local": (logits(hubm) - local).abs().max().item(),
                  "local_vs_base": (local - plain).abs().max().item(),
                  "base_in_config": hubm.peft_config["default"].base_model_name_or_path}))
"""


def test_adapter_round_trip(hub, api, client_env, tiny_model, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter = tmp_path / "adapter"
    model.save_pretrained(adapter)   # base_model_name_or_path = the local tiny model dir
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == tiny_model
    (adapter / "qup_train.json").write_text(json.dumps({
        "base_model": "qup/tiny-random-llama", "base_model_revision": "seed0",
        "dataset_repo": REPO, "dataset_revision": "v3", "dataset_config": "rft",
        "config": {"lr": 2e-4, "max_steps": 5, "model": tiny_model, "hub_token": ALICE},
        "metrics": {"train_loss": 2.5, "steps": 5}}))
    evals = [{"dataset": "svamp", "split": "test", "accuracy": 0.12, "correct": 6, "total": 50}]
    repo = "alice/tiny-qup-rft-lora"
    result = publish_adapter(repo, adapter, token=ALICE, endpoint=hub.url, eval_results=evals)
    assert result.created_commit and result.tag == "v1"
    again = publish_adapter(repo, adapter, token=ALICE, endpoint=hub.url, eval_results=evals)
    assert (again.commit_sha, again.created_commit) == (result.commit_sha, False)

    card = ModelCard(readme(api, repo, "v1", repo_type="model"))
    assert card.data.base_model == "qup/tiny-random-llama" and card.data.library_name == "peft"
    assert card.data.base_model_relation == "adapter" and card.data.datasets == [REPO]
    assert card.data.base_model_revision == "seed0"
    assert card.data.eval_results[0].metric_value == 0.12
    assert card.data.eval_results[0].dataset_name == "svamp"
    assert card.data.qup == {"variant": "rft", "dataset_repo": REPO, "dataset_config": "rft",   # for the Space
                             "dataset_revision": "v3", "eval": evals}
    for needle in ("seed0", 'revision="v3"', '"rft"', f'"{repo}", revision="v1"', "train_loss"):
        assert needle in card.text, needle
    assert ALICE not in card.content
    uploaded = json.loads(open(api.hf_hub_download(repo, "qup_train.json", revision="v1")).read())
    assert uploaded["config"]["hub_token"] == "[redacted]"

    got = run_client(client_env, ADAPTER_CHECK, {"base": tiny_model, "local": str(adapter),
                                                 "repo": repo, "revision": result.tag})
    assert got["local_vs_base"] > 1e-4      # the adapter changes the logits ...
    assert got["hub_vs_local"] == 0.0       # ... and the Hub copy is the same adapter
    assert got["base_in_config"] == "qup/tiny-random-llama"


def test_cli_publish(hub, tmp_path, monkeypatch, capsys):
    from toolkit.cli import main
    traces("rft", 3, 2).save_to_disk(str(tmp_path / "rft"))
    monkeypatch.setenv("HF_TOKEN", ALICE)
    argv = ["publish", "dataset", "--repo", "alice/cli-test", "--variant", f"rft={tmp_path / 'rft'}",
            "--hub-url", hub.url, "--source-info", json.dumps(SOURCE)]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["tag"] == "v1" and out["created_commit"] is True and len(out["commit_sha"]) == 40
    assert main(argv) == 0   # same dir again: deterministic parquet → no new commit
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (again["commit_sha"], again["tag"], again["created_commit"]) == (out["commit_sha"], "v1", False)
    monkeypatch.delenv("HF_TOKEN")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("qup: error: no Hub token") and "alice/cli-test" in err[-1]


def test_adapter_scores_carry_their_protocol_in_model_index_and_eval_results(hub, api, tiny_model, shared_data,
                                                                           tmp_path):
    """A real evaluate's metrics (greedy and sampled) published: `model-index` `dataset.args` and
    `.eval_results/*.yaml` `notes` (parsed by huggingface_hub) state each score's protocol."""
    import yaml
    from huggingface_hub import parse_eval_result_entries

    from toolkit.sources import SourceConfig
    from toolkit.stages.evaluate import EvaluateConfig, evaluate_command
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    adapter = tmp_path / "adapter"
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                   LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(adapter)
    (adapter / "qup_train.json").write_text(json.dumps({"base_model": "qup/tiny-random-llama"}))
    common = dict(model=tiny_model, adapter=str(adapter), max_new_tokens=4)
    greedy = evaluate_command(EvaluateConfig(**common, problems=SourceConfig(source="gsm8k", limit=2),
                                             out=str(tmp_path / "g")))
    sampled = evaluate_command(EvaluateConfig(**common, problems=SourceConfig(source="math500", limit=2),
                                              temperature=0.6, n=2, k=[1, 2], out=str(tmp_path / "s")))
    repo = "alice/tiny-protocol-lora"
    publish_adapter(repo, adapter, token=ALICE, endpoint=hub.url, eval_results=[greedy, sampled])

    card = ModelCard(readme(api, repo, "v1", repo_type="model"))
    by_metric = {(r.dataset_name, r.metric_name): r for r in card.data.eval_results}
    assert set(by_metric) == {("gsm8k", "pass@1 (greedy)"), ("math500", "pass@1 (n=2, T=0.6, top_p=1)"),
                              ("math500", "pass@2 (n=2, T=0.6, top_p=1)"), ("math500", "maj@2 (n=2, T=0.6, top_p=1)")}
    args = by_metric[("gsm8k", "pass@1 (greedy)")].dataset_args
    assert args["prompt_id"] == load_prompt("math_cot").id and args["protocol_id"] == greedy["protocol_id"]
    assert args["shots"] == "0" and args["sampling"] == '{"greedy": true}' and "adapter" not in args
    assert by_metric[("gsm8k", "pass@1 (greedy)")].dataset_type == "openai/gsm8k"
    assert "different protocols" in card.text and str(tmp_path) not in card.content   # no local paths

    entries = {}
    for name in ("gsm8k", "math500"):
        text = open(api.hf_hub_download(repo, f".eval_results/{name}.yaml", revision="v1")).read()
        entries[name] = parse_eval_result_entries(yaml.safe_load(text))
    [g] = entries["gsm8k"]
    assert (g.dataset_id, g.task_id, g.value) == ("openai/gsm8k", "gsm8k", greedy["accuracy"])
    assert g.notes.startswith("pass@1 (greedy), test split; protocol " + greedy["protocol_id"])
    assert "0-shot" in g.notes and "math-verify" in g.notes
    assert [e.dataset_id for e in entries["math500"]] == ["HuggingFaceH4/MATH-500"] * 3
    assert all("sampled n=2 T=0.6" in e.notes for e in entries["math500"])
