"""End to end through the CLI: `qup run smoke` (tiny model, whole loop, embedded Hub)."""
import json
import os
import subprocess
import sys

from toolkit.io import load


def test_qup_run_smoke_end_to_end(tmp_path, shared_data, tiny_model):
    run_dir = tmp_path / "smoke"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    cmd = [sys.executable, "-m", "toolkit.cli", "run", "smoke", "--run-dir", str(run_dir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(summary["evaluations"]) == {"base", "self"}
    assert summary["evaluations"]["base"]["total"] == 8
    assert summary["data"]["self"]["rows"] == 16  # 8 problems x k=2
    # Every stage left its output.
    assert len(load(run_dir / "samples")) == 16
    assert set(load(run_dir / "self")["verify_status"]) <= {"correct", "wrong", "no_answer", "timeout"}
    assert (run_dir / "adapters" / "self" / "adapter_model.safetensors").is_file()
    assert len(load(run_dir / "eval" / "self")) == 8
    report = (run_dir / "report.md").read_text()
    assert "| base |" in report and "0 / 8" in report and (run_dir / "report.png").stat().st_size > 1000
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
                "print(len(ds), ds[0]['trace_id'])")
        env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HOME=str(tmp_path / "hf"))
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.split()[0] == "16"
    # A second run finds every stage done and redoes nothing.
    again = subprocess.run(cmd, env=env | {"HF_ENDPOINT": ""}, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stderr.count("done already, skipping") >= 6
    assert "generate:" not in again.stderr


def test_bad_recipe_key_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntrain_problems: {source: svamp}\neval_problems: {source: svamp}\n"
                   "sample: {temprature: 0.5}\n")
    proc = subprocess.run([sys.executable, "-m", "toolkit.cli", "run", str(bad)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        proc.stderr.strip().splitlines()[-1]] and "unknown key(s) ['temprature']" in proc.stderr
