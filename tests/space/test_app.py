"""The served app: no secret reaches the page, limits answer clearly and the app keeps serving;
`qup space deploy` pushes a Space repo that runs unchanged."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ALICE
from tests.space.conftest import DATASET
from toolkit.space.app import build_demo
from toolkit.space.settings import SpaceSettings

ROOT = Path(__file__).resolve().parents[2]
TGI_TOKEN, PRIVATE_URL = "hf_tgisecrettoken1234", "http://127.0.0.1:9/private-endpoint-7f3a"


def test_page_holds_no_secret_and_limits_answer_clearly(experiment, free_port):
    from gradio_client import Client
    from gradio_client.exceptions import AppError
    settings = SpaceSettings(endpoint=experiment.url, token=ALICE, backend="tgi", tgi_url=PRIVATE_URL,
                             tgi_token=TGI_TOKEN, max_chars=200, max_new_tokens=32)
    demo = build_demo(settings)
    demo.launch(server_name="127.0.0.1", server_port=free_port, prevent_thread_lock=True, quiet=True)
    try:
        url = f"http://127.0.0.1:{free_port}"
        pages = [httpx.get(f"{url}{path}", timeout=30).text
                 for path in ("/", "/config", "/gradio_api/info", "/gradio_api/openapi.json")]
        assert DATASET in pages[1]                                    # the config is really there
        for page in pages:
            for secret in (TGI_TOKEN, "private-endpoint-7f3a", "127.0.0.1:9/", ALICE):
                assert secret not in page
        client = Client(url, verbose=False)
        with pytest.raises(AppError, match="accepts at most 200"):
            client.predict(["base", "rft"], None, "x" * 201, 32, api_name="/run")
        with pytest.raises(AppError, match="greater than maximum value 32"):   # the slider checks it first
            client.predict(["base", "rft"], None, "2+2?", 10_000, api_name="/run")
        with pytest.raises(AppError, match="between 2 and 4"):
            client.predict(["base"], None, "2+2?", 16, api_name="/run")
        out = client.predict(["base", "rft"], None, "2+2?", 16, api_name="/run")   # still serving
        shown = str(out)
        assert "generation failed" in shown and "private-endpoint" not in shown   # endpoint down: said so
    finally:
        demo.close()


def test_deploy_pushes_a_space_that_runs_unchanged(experiment, tmp_path):
    from huggingface_hub import HfApi

    from toolkit.errors import QupError
    from toolkit.space.launch import deploy
    url = deploy("alice/qup-arena", endpoint=experiment.url, token=ALICE)
    assert url.startswith(f"{experiment.url}/spaces/alice/qup-arena/commit/")
    api = HfApi(endpoint=experiment.url)
    info = api.space_info("alice/qup-arena")
    assert info.sdk == "gradio" and info.card_data["app_file"] == "app.py"
    assert sorted(info.card_data["models"]) == sorted(experiment.adapters.values())
    assert info.card_data["datasets"] == [DATASET]
    files = {s.rfilename for s in info.siblings}
    assert {"app.py", "requirements.txt", "README.md", "toolkit/space/app.py", "toolkit/answers.py",
            "toolkit/prompts/math_cot.txt"} <= files
    assert not any("__pycache__" in f for f in files)
    with pytest.raises(QupError, match="no Hub token to deploy alice/x"):
        deploy("alice/x", endpoint=experiment.url, token="")

    # The Space's own files import and build the app (toolkit from the Space, not this checkout).
    local = api.snapshot_download("alice/qup-arena", repo_type="space", local_dir=tmp_path / "space")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "QUP_SPACE", "PYTHONPATH"))}
    env.update(HF_ENDPOINT=experiment.url, HF_HUB_DISABLE_XET="1", HF_HOME=str(tmp_path / "hf"))
    code = "import app, toolkit; print(toolkit.__file__); print(type(app.demo).__name__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=local, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    where, kind = out.stdout.split()[-2:]
    assert where.startswith(str(local)) and kind == "Blocks"


def test_space_requirements_are_toolkit_dependencies():
    import configparser
    import re
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    deps = cfg["options"]["install_requires"] + cfg["options.extras_require"]["space"]
    names = {re.split(r"[<>=\s]", d.strip())[0].lower() for d in deps.splitlines() if d.strip()}
    reqs = [line.strip() for line in (ROOT / "spaces" / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    missing = [r for r in reqs if re.split(r"[<>=\s]", r)[0].lower() not in names | {"pandas"}]
    assert not missing, f"spaces/requirements.txt names packages the toolkit does not depend on: {missing}"
