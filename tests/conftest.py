"""Shared fixtures: the tiny random model, the shared data folder, free ports."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "0")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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
    with HubServer(tmp_path / "hub", tokens={"alice": ("hf_alicewritetoken", "write"),
                                             "bob": ("hf_bobreadtoken", "read")}) as server:
        yield server
