"""``qup jobs``: a recipe submitted as a job to the embedded Hub with huggingface_hub's real jobs
client publishes its outputs and resumes from the run-state repo; a stage job; the dry-run spec
of the paper recipe is one the Jobs API accepts as is; secrets stay names."""
from __future__ import annotations

import configparser
import json
import os
import shlex
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from huggingface_hub._jobs_api import _create_job_spec

from toolkit import steps
from toolkit.cli import main as qup
from toolkit.hub.routes_jobs import validate_spec
from toolkit.hub.server import HubServer
from toolkit.jobs import client
from toolkit.jobs.spec import SCRIPT, JobConfig, JobError, build_spec, redacted
from toolkit.run import load_recipe, stage_configs

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_alice_jobs_e2e_secret"
TRIM = ["train_problems.limit=4", "eval_problems.limit=4", "sample.k=2", "train.max_steps=1",
        "score.embedder=''", "evaluate.max_new_tokens=16"]


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HUB_DISABLE_EXPERIMENTAL_WARNING", "1")
    with HubServer(tmp_path / "hub", tokens={"alice": (TOKEN, "write")}) as server:
        yield server


def _needs_sandbox() -> None:
    """The embedded Hub runs jobs only in a bubblewrap sandbox: skip (and say why) where there is none."""
    from toolkit.hub.sandbox import unavailable
    if why := unavailable():
        pytest.skip(f"jobs cannot run here: {why}")


def _job_env(shared_data) -> list[str]:
    """A job inherits nothing from the Hub's environment: the suite's backend choice is passed on."""
    backend = os.environ.get("QUP_BACKEND")
    return [f"QUP_SHARED_DATA={shared_data}", *([f"QUP_BACKEND={backend}"] if backend else [])]


def _follow(job_id: str, cfg: JobConfig) -> list[str]:
    lines = list(client.logs(job_id, cfg, follow=True))
    api = HfApi(endpoint=cfg.hub_url, token=TOKEN)
    info = api.wait_for_job(job_id, namespace="alice", timeout=300, poll_interval=0.5)
    assert info.status.stage == "COMPLETED", (info.status, "\n".join(lines[-40:]))
    return lines


def test_recipe_job_publishes_and_resumes_from_the_hub(hub, shared_data, tiny_model):
    _needs_sandbox()
    cfg = JobConfig(hub_url=hub.url, namespace="alice", timeout="10m",
                    env=_job_env(shared_data))
    t0 = time.monotonic()
    out = client.submit("smoke", cfg, sets=TRIM)
    assert out["spec"]["secrets"] == {"HF_TOKEN": "***"} and out["state_repo"] == "alice/qup-run-smoke"
    lines = _follow(out["job"]["id"], cfg)
    first_s = time.monotonic() - t0
    text = "\n".join(lines)
    assert TOKEN not in text
    assert "pushed step train:self" in text and "pushed the run dir to alice/qup-run-smoke (finished)" in text
    api = HfApi(endpoint=hub.url, token=TOKEN)
    # the job's outputs are published on the Hub it ran against
    data_repo = "alice/qup-svamp-tiny-random-llama"
    assert "self/train-00000-of-00001.parquet" in api.list_repo_files(data_repo, repo_type="dataset")
    assert "adapter_model.safetensors" in api.list_repo_files(f"{data_repo}-self-lora")
    # and its run dir lives in the private run-state repo
    assert api.repo_info("alice/qup-run-smoke", repo_type="dataset").private
    state = set(api.list_repo_files("alice/qup-run-smoke", repo_type="dataset"))
    assert {"run/run.json", "run/adapters/self/qup_stage.json", "code/toolkit/jobs/qup_job.py"} <= state
    summary = json.loads(Path(api.hf_hub_download("alice/qup-run-smoke", "run/run.json",
                                                  repo_type="dataset")).read_text())
    assert summary["evaluations"]["base"]["total"] == 4 and summary["data"]["self"]["rows"] == 8

    # a re-submitted job starts on an empty disk and resumes from the state repo: nothing re-runs
    t1 = time.monotonic()
    again = client.submit("smoke", cfg, sets=TRIM)
    text2 = "\n".join(_follow(again["job"]["id"], cfg))
    assert "train:self: done already" in text2 and "sample: done already" in text2
    assert "pushed step" not in text2
    print(f"recipe job {first_s:.0f} s, resumed job {time.monotonic() - t1:.0f} s")


def test_stage_job_writes_into_the_state_repo(hub, shared_data, tiny_model, tmp_path):
    _needs_sandbox()
    config = tmp_path / "sample.yaml"
    config.write_text(f"model: tiny-random\nproblems: {{source: svamp, split: test, limit: 2}}\n"
                      f"k: 1\nmax_new_tokens: 8\nout: samples\n")
    cfg = JobConfig(hub_url=hub.url, namespace="alice", state_repo="alice/stage-state",
                    env=_job_env(shared_data))
    out = client.submit("sample", cfg, args=["--config", str(config), "--temperature", "0.5"])
    assert "code:files/sample.yaml" in out["spec"]["command"][2]
    _follow(out["job"]["id"], cfg)
    files = HfApi(endpoint=hub.url, token=TOKEN).list_repo_files("alice/stage-state", repo_type="dataset")
    assert "code/files/sample.yaml" in files
    assert any(f.startswith("run/samples/shards/") for f in files)


def test_dry_run_of_the_paper_recipe_is_a_spec_the_api_accepts(hub, capsys):
    code = qup(["jobs", "submit", "paper-qwen2.5-1.5b", "--flavor", "a100-large", "--timeout", "12h",
                "--namespace", "alice", "--hub-url", hub.url, "--secrets", "WANDB_API_KEY", "--dry-run"])
    assert code == 2        # WANDB_API_KEY is not set: a one-line error naming it
    assert "secret WANDB_API_KEY is not set" in capsys.readouterr().err
    assert qup(["jobs", "submit", "paper-qwen2.5-1.5b", "--flavor", "a100-large", "--timeout", "12h",
                "--namespace", "alice", "--hub-url", hub.url, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert TOKEN not in printed
    out = json.loads(printed)
    spec = out["spec"]
    assert spec["secrets"] == {"HF_TOKEN": "***"} and spec["flavor"] == "a100-large" and spec["timeout"] == 43200
    assert "recipe paper-qwen2.5-1.5b --set hub.org=alice" in spec["command"][2]
    subprocess.run(["bash", "-n", "-c", spec["command"][2]], check=True)      # valid shell
    assert hub.app.jobs.jobs == {}                                            # nothing submitted
    # the Jobs API accepts it as is (huggingface_hub builds the payload, the server validates it)
    payload = _create_job_spec(**{k: v for k, v in spec.items() if k != "namespace"} | {"secrets": {"HF_TOKEN": TOKEN}})
    stored, secrets = validate_spec(payload)
    assert stored["timeoutSeconds"] == 43200 and secrets == {"HF_TOKEN": TOKEN}
    # and so does the hf CLI line it prints (secrets by name: --secrets HF_TOKEN)
    upload, run = out["hf_commands"][0], out["hf_commands"][-1]
    import toolkit
    where = str(Path(toolkit.__file__).resolve().parents[1])        # the installed toolkit/'s folder
    assert shlex.split(upload)[:5] == ["hf", "upload", "alice/qup-run-paper-qwen2.5-1.5b", where, "code"]
    argv = shlex.split(run)
    assert argv[:4] == ["hf", "jobs", "run", "--detach"] and "--secrets" in argv and TOKEN not in run
    hf = str(Path(sys.executable).parent / "hf")
    env = {"HF_TOKEN": TOKEN, "HF_ENDPOINT": hub.url, "PATH": "/usr/bin:/bin", "HF_HUB_DISABLE_XET": "1"}
    dry = subprocess.run([hf, *argv[1:3], "--dry-run", *argv[4:]], env=env, capture_output=True, text=True,
                         timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert "a100-large" in dry.stdout and "HF_TOKEN=***" in dry.stdout and TOKEN not in dry.stdout


def test_job_config_errors_name_the_option():
    for kwargs, words in (({"flavor": "gpu-please"}, "--flavor"), ({"timeout": "0"}, "--timeout"),
                          ({"timeout": "9d"}, "--timeout"), ({"secrets": ["HF_TOKEN=hf_abc"]}, "NAME"),
                          ({"env": ["NOEQUALS"]}, "--env"), ({"env": ["HF_TOKEN=x"]}, "--secret HF_TOKEN")):
        with pytest.raises(JobError, match=words):
            JobConfig(**kwargs)
    with pytest.raises(JobError, match="secret WANDB_API_KEY is not set"):
        build_spec("smoke", JobConfig(secrets=["WANDB_API_KEY"]), environ={"HF_TOKEN": "x"}, namespace="alice")
    with pytest.raises(JobError, match="namespace"):
        build_spec("smoke", JobConfig(), environ={"HF_TOKEN": "x"}, namespace="../evil")
    spec = build_spec("smoke", JobConfig(), environ={"HF_TOKEN": "hf_val"}, namespace="alice")
    assert redacted(spec)["secrets"] == {"HF_TOKEN": "***"} and spec["secrets"] == {"HF_TOKEN": "hf_val"}
    assert "hf_val" not in json.dumps(redacted(spec))


def test_network_group_and_job_env_in_recipe_overrides(monkeypatch):
    from toolkit.jobs.spec import hf_commands
    from toolkit.jobs.sync import parse_sets
    with pytest.raises(JobError, match="--network-group"):
        JobConfig(network_group="Bad_Group")
    spec = build_spec("paper-qwen2.5-1.5b", JobConfig(network_group="qup-paper"), environ={"HF_TOKEN": "x"},
                      namespace="alice", sets=["oracle.endpoints=[http://${HF_NETWORK_GROUP_PREFIX}oracle:8080]"])
    assert spec["network_group"] == "qup-paper"
    assert "'oracle.endpoints=[http://${HF_NETWORK_GROUP_PREFIX}oracle:8080]'" in spec["command"][2]  # unexpanded
    assert "--network-group qup-paper" in hf_commands(spec, "alice/x", {})[-1]
    monkeypatch.setenv("HF_NETWORK_GROUP_PREFIX", "grp-")         # expanded in the job, where it is set
    assert parse_sets(["oracle.endpoints=[http://${HF_NETWORK_GROUP_PREFIX}oracle:8080]"]) == \
        {"oracle": {"endpoints": ["http://grp-oracle:8080"]}}


def test_job_script_dependencies_are_the_projects():
    """The PEP 723 block of toolkit/jobs/qup_job.py lists exactly setup.cfg's install_requires."""
    text = SCRIPT.read_text()
    block = text.split("# /// script\n", 1)[1].split("# ///", 1)[0]
    meta = tomllib.loads("\n".join(line[2:] for line in block.splitlines()))
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    required = [r.strip() for r in cfg["options"]["install_requires"].splitlines() if r.strip()]
    assert meta["dependencies"] == required
    assert meta["requires-python"] == cfg["options"]["python_requires"]


def test_paper_recipe_loads_and_validates():
    cfg = load_recipe("paper-qwen2.5-1.5b")
    assert cfg.model == "Qwen/Qwen2.5-1.5B-Instruct" and cfg.oracle.backend == "endpoint"
    assert cfg.train_problems.source == "openai/gsm8k" and cfg.eval_problems.split == "test"
    stages = stage_configs(cfg, Path("runs/paper"))
    assert stages["score:rft"].reward == "classifier"
    assert stages["score:rft"].reward_model.startswith("Skywork/")
    assert {"train:style_aligned", "evaluate:selected"} <= set(stages)


def test_on_done_hook_runs_after_the_marker_only_for_work_done(tmp_path):
    seen = []

    def hook(step, result):
        seen.append((step.name, result["n"], steps.skipped(step.out, keys[step.name])))
    keys: dict = {}
    steps.ON_DONE.append(hook)
    try:
        steps.run_step(steps.Step("a", tmp_path / "a", {"k": 1}, [], lambda: {"n": 1}), keys)
        steps.run_step(steps.Step("a", tmp_path / "a", {"k": 1}, [], lambda: {"n": 1}), keys)  # cached
    finally:
        steps.ON_DONE.remove(hook)
    assert seen == [("a", 1, True)]             # once, with the finished marker already written


def test_job_stages_and_flavors_come_from_the_registries():
    import dataclasses

    from huggingface_hub import JobHardware

    from toolkit import variants as V
    from toolkit.jobs.spec import hub_flavors, target_kind
    assert hub_flavors() == [h.value for h in JobHardware]           # the Hub's list, not the embedded one's
    assert JobConfig(flavor="rtx-pro-6000x2").flavor == "rtx-pro-6000x2"
    assert [target_kind(t) for t in ("sample", "oracle_refine", "style_aligned", "smoke")] == \
        ["stage", "stage", "stage", "recipe"]
    V.register(dataclasses.replace(V.get("rft"), name="rft_toy"))    # a new variant is a job stage at once
    try:
        assert target_kind("rft_toy") == "stage"
    finally:
        del V.REGISTRY["rft_toy"]
