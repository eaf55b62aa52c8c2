"""Fixtures for the Hub server tests (the ``hub`` server fixture lives in tests/conftest.py)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ALICE, BOB = "hf_alicewritetoken", "hf_bobreadtoken"
VENV_BIN = Path(sys.executable).parent


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
