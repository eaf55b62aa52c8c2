"""A wheel install submits a job: the job script ships as package data (issue 22, item 6)."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """A fresh venv with only the built wheel installed (--no-deps); its dependencies come from
    this interpreter's site-packages through a .pth path line (which runs no editable hook)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("toolkit", "dataset_cards"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=ignore)
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src)],
                   check=True, cwd=tmp)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], check=True)
    venv_py = tmp / "venv" / "bin" / "python"
    site = subprocess.run([str(venv_py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next((tmp / "dist").glob("qup_toolkit-*.whl"))
    subprocess.run([*pip, "--python", str(venv_py), "install", "--no-deps", "--no-index", str(wheel)], check=True)
    return tmp / "venv"


def _run(venv: Path, *cmd, **kw):
    env = {**os.environ, "HF_TOKEN": "hf_wheel_test_token", "PYTHONPATH": ""}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=venv.parent, timeout=300, **kw)


def test_a_wheel_install_submits_a_job(wheel_venv):
    where = _run(wheel_venv, str(wheel_venv / "bin" / "python"), "-c",
                 "import toolkit, toolkit.jobs.client as c; f = c.code_files('smoke', []); "
                 "print(toolkit.__file__); print(f['toolkit/jobs/qup_job.py'])")
    assert where.returncode == 0, where.stderr[-2000:]
    package, script = where.stdout.split()
    assert package.startswith(str(wheel_venv)) and script.startswith(str(wheel_venv))   # not the checkout
    proc = _run(wheel_venv, str(wheel_venv / "bin" / "qup"), "jobs", "submit", "smoke", "--flavor",
                "a10g-small", "--namespace", "alice", "--dry-run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "qup-job/code/toolkit/jobs/qup_job.py" in out["spec"]["command"][-1]
    assert out["spec"]["secrets"] == {"HF_TOKEN": "***"} and "hf_wheel_test_token" not in proc.stdout
    helped = _run(wheel_venv, str(wheel_venv / "bin" / "python"), script, "--help")   # the script runs there
    assert helped.returncode == 0 and "recipe" in helped.stdout, helped.stderr[-2000:]
