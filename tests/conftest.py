"""Shared fixtures: the tiny random model, the shared data folder, free ports."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "0")
# `backend: auto` picks vLLM where installed; the suite runs tiny transformers models and starts
# vLLM only in its focused tests (tests/generation/test_vllm.py), which ask for it by name.
os.environ.setdefault("QUP_BACKEND", "transformers")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ALICE, BOB = "hf_alicewritetoken", "hf_bobreadtoken"   # tokens of the `hub` fixture
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    import torch
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real GSM8K, MATH-500, MAWPS, SVAMP, ASDiv); tests skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model() -> str:
    """Path of the tiny random Llama with SmolLM2's tokenizer (built once into the qup cache)."""
    from toolkit.models import resolve_model
    return resolve_model("tiny-random")


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A running local Hub-compatible server (toolkit.hub.HubServer) on a tmp root.

    Tokens: alice (write) ``hf_alicewritetoken``, bob (read) ``hf_bobreadtoken``.
    Use ``HfApi(endpoint=hub.url, token=...)`` or a subprocess with ``HF_ENDPOINT=hub.url``
    and ``HF_HUB_DISABLE_XET=1`` (Xet is disabled in-process here: the server speaks LFS).
    """
    import huggingface_hub.constants
    from toolkit.hub.server import HubServer
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    with HubServer(tmp_path / "hub", tokens={"alice": (ALICE, "write"),
                                             "bob": (BOB, "read")}) as server:
        yield server


@pytest.fixture
def api(hub):
    """``HfApi`` logged in as alice (write token) against the local hub."""
    from huggingface_hub import HfApi
    return HfApi(endpoint=hub.url, token=ALICE)


@pytest.fixture
def client_env(hub, tmp_path):
    """Environment for a client subprocess (datasets, hf CLI) pointed at the local hub as alice."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_TOKEN=ALICE,
               HF_HOME=str(tmp_path / "hf_home"), HF_DATASETS_CACHE=str(tmp_path / "ds_cache"),
               HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false")
    return env
