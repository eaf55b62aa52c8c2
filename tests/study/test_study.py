"""``qup study`` on tiny models: seeds × variants × benchmarks trained and evaluated, the results
dataset published to the embedded Hub and loadable, the report written, and a resumed study
re-running only what is missing."""
import json
import re
import subprocess
import sys

import pytest

from toolkit.config import ConfigError
from toolkit.io import load

QUP = [sys.executable, "-m", "toolkit.cli"]
STUDY = {"variants": ["self", "oracle_synth"], "oracle": {"model": "reference"},
         "train_problems": {"source": "gsm8k", "split": "train", "limit": 4},
         "study": {"seeds": [0, 1], "lambdas": [0.0], "baseline": "self", "bootstrap": 200,
                   "benchmarks": [{"source": "svamp", "split": "test", "offset": 950, "limit": 4}]}}


def _markers(run_dir):
    return {p.parent.relative_to(run_dir).as_posix(): p.stat().st_mtime_ns
            for p in run_dir.rglob("qup_stage.json")}


def test_study_end_to_end_publishes_results_and_resumes(tmp_path, shared_data, tiny_model):
    from toolkit.hub import HubServer
    from toolkit.schema import RESULTS
    from toolkit.study import run_study

    run_dir = tmp_path / "study"
    summary = run_study("smoke", STUDY, run_dir=str(run_dir))
    # 3 trained variants (self, oracle_synth, selected at λ=0) × 2 seeds + base, on 2 benchmarks.
    res = load(run_dir / "study" / "results").to_list()
    assert len(res) == (1 + 3 * 2) * 2 and load(run_dir / "study" / "results").features == RESULTS
    cells = {(r["variant"], r["seed"], r["benchmark"]) for r in res}
    assert ("base", -1, "svamp") in cells and ("selected_lam0", 1, "svamp") in cells
    assert {r["total"] for r in res if r["benchmark"] == "svamp"} == {8, 4}
    assert all(r["ci_low"] <= r["accuracy"] <= r["ci_high"] for r in res)
    synth = [r for r in res if r["variant"] == "oracle_synth"]
    assert {r["train_rows"] for r in synth} == {4} and all(r["reward"] is not None for r in synth)
    assert all(r["adapter_repo"].endswith("-lora") and r["adapter_revision"] == "v1" for r in synth)
    assert {r["adapter_repo"] for r in synth} == {"qup/qup-gsm8k-tiny-random-llama-oracle-synth-lora",
                                                  "qup/qup-gsm8k-tiny-random-llama-oracle-synth-seed1-lora"}
    assert all(r["dataset_config"] == "oracle_synth" and r["dataset_revision"] for r in synth)
    assert all(r["train_wall_s"] > 0 and r["eval_wall_s"] > 0 for r in synth)
    # Two seeds really differ (LoRA init), so they are two adapters.
    a0 = (run_dir / "adapters" / "oracle_synth" / "adapter_model.safetensors").read_bytes()
    a1 = (run_dir / "adapters" / "oracle_synth-seed1" / "adapter_model.safetensors").read_bytes()
    assert a0 != a1
    from toolkit import variants
    assert "selected_lam0" not in variants.REGISTRY      # registered for the study's duration only
    sel = load(run_dir / "variants" / "selected_lam0")
    assert len(sel) == 4 and all("lambda=0" in m for m in sel["mode"])
    report = (run_dir / "study" / "report.md").read_text()
    assert "## Paradox table" in report and "Spearman" in report and "Verdict: the paradox" in report
    assert (run_dir / "study" / "paradox.png").stat().st_size > 1000
    assert "**Compute** (wall time per stage" in report
    for stage, steps in (("sample", 1), ("variant:oracle_synth", 1), ("train", 6), ("evaluate", 14)):
        assert re.search(rf"^\| {stage} \| {steps} \| +\| \d+\.\d \| \d+% \|$", report, re.M), stage
    nll = summary["analyses"]["svamp"]["prediction"]["nll"]
    assert nll["n"] == 3
    # The results dataset is on the Hub, loadable with load_dataset, its card states the findings.
    pub = summary["results_published"]
    assert pub["repo"] == "qup/qup-gsm8k-tiny-random-llama-results"
    with HubServer(run_dir / "hub") as hub:
        from huggingface_hub import HfApi
        code = ("import json; from datasets import load_dataset; ds = load_dataset("
                f"'{pub['repo']}', revision='{pub['revision']}', split='train'); "
                "print(json.dumps([len(ds), sorted(set(ds['variant']))]))")
        env = {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf"),
               "PATH": "/usr/bin:/bin"}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        n, variants = json.loads(out.stdout.strip().splitlines()[-1])
        assert n == 14 and variants == ["base", "oracle_synth", "selected_lam0", "self"]
        api = HfApi(endpoint=hub.url)
        readme = api.hf_hub_download(pub["repo"], "README.md", repo_type="dataset", revision=pub["revision"],
                                     cache_dir=str(tmp_path / "hf2"))
        text = open(readme).read()
        assert "qup-results" in text and "Verdict: the paradox" in text and "Spearman" in text
        assert "[`report.md`](report.md)" in text                     # the whole report, beside the rows
        for name in ("report.md", "paradox.png"):
            got = api.hf_hub_download(pub["repo"], name, repo_type="dataset", revision=pub["revision"],
                                      cache_dir=str(tmp_path / "hf2"))
            assert open(got, "rb").read() == (run_dir / "study" / name).read_bytes()

    # Resume: an evaluation lost (as if killed before it finished) is the only step re-run.
    before = _markers(run_dir)
    lost = run_dir / "eval" / "self-seed1-svamp"
    assert lost.is_dir()
    (lost / "qup_stage.json").unlink()
    again = run_study("smoke", STUDY, run_dir=str(run_dir))
    after = _markers(run_dir)
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {"eval/self-seed1-svamp"}
    # The re-run evaluation gives the same outcomes; only its wall time is new (a new revision).
    res2 = load(run_dir / "study" / "results").to_list()
    strip = lambda rows: [{k: v for k, v in r.items() if k != "eval_wall_s"} for r in rows]  # noqa: E731
    assert strip(res2) == strip(res)
    assert again["results_published"]["revision"] == "v2"

    # A run dir kept without its adapter weights (as studies/ keeps it in git): finished cells stay
    # finished; a cell with an evaluation missing trains its adapter again, and nothing else runs.
    for weights in run_dir.glob("adapters/*/adapter_model.safetensors"):
        weights.unlink()
    (lost / "qup_stage.json").unlink()
    before = _markers(run_dir)
    run_study("smoke", STUDY, run_dir=str(run_dir))
    after = _markers(run_dir)
    assert {k for k in after if after[k] != before.get(k)} == {"adapters/self-seed1", "eval/self-seed1-svamp"}
    assert (run_dir / "adapters" / "self-seed1" / "adapter_model.safetensors").is_file()
    assert not (run_dir / "adapters" / "self" / "adapter_model.safetensors").exists()


def test_study_config_errors_are_one_line(tmp_path):
    from toolkit.study import load_study
    with pytest.raises(ConfigError, match="seeds must be distinct"):
        load_study("smoke", {"study": {"seeds": [1, 1]}})
    with pytest.raises(ConfigError, match="baseline 'rft' is not a trained variant"):
        load_study("smoke", {"study": {"lambdas": []}})
    proc = subprocess.run(QUP + ["study", "smoke", "--run-dir", str(tmp_path / "r"),
                                 "--set", "study.lambdas=[-1]"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "lambdas must be >= 0" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "r").exists()


def test_the_study_keeps_its_selected_variants_in_a_registry_it_owns():
    from toolkit import variants as V
    from toolkit.run import load_recipe
    from toolkit.study import load_study, variants
    before = dict(V.REGISTRY)
    study, run_over = load_study("cpu-paradox", {"study": {"lambdas": [0.0, 0.5]}})
    own = variants(study.lambdas)
    assert {"selected_lam0", "selected_lam0p5"} <= set(own) and V.REGISTRY == before
    with V.using(own):                               # what run_study does around the run
        cfg = load_recipe("cpu-paradox", run_over)
        assert V.get("selected_lam0p5").scored and cfg.variant_options["selected_lam0p5"].lam == 0.5
    with pytest.raises(ConfigError, match="unknown variant 'selected_lam0p5'"):
        V.get("selected_lam0p5")                     # nowhere else in the process
    assert V.REGISTRY == before


def test_selection_criteria_become_study_variants_named_after_them():
    from toolkit import variants as V
    from toolkit.run import load_recipe
    from toolkit.study import load_study, variants
    study, run_over = load_study("cpu-study")            # the power-sized recipe loads and validates
    assert study.criteria == ["grape", "rsr", "ifd", "mix"] and study.lambdas == [1.0]
    own = variants(study.lambdas, study.criteria)
    with V.using(own):
        cfg = load_recipe("cpu-study", run_over)
        assert cfg.variant_options["selected_rsr"].criterion == "rsr"
        assert cfg.variant_options["selected_lam1"].criterion == "reward_nll"
        assert "RSR" in V.get("selected_rsr").doc or "Rank-Surprisal" in V.get("selected_rsr").doc
    assert [v for v in run_over["variants"] if v.startswith("selected_")] == [
        "selected_lam1", "selected_grape", "selected_rsr", "selected_ifd", "selected_mix"]
    with pytest.raises(ConfigError, match=r"study: criteria \['perplexity'\] must be distinct registered "
                                          r"selection criteria other than reward_nll"):
        load_study("smoke", {"study": {"criteria": ["perplexity"]}})
