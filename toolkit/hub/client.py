"""Small helpers for talking to a Hub endpoint (huggingface.co or a compatible server such as ours).

Example:
    >>> safe_endpoint("http://user:pw@10.0.0.5:8080/?token=x")
    'http://10.0.0.5:8080'
"""
from __future__ import annotations

import contextlib
import os
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "https://huggingface.co"


def safe_endpoint(endpoint: str) -> str:
    """``endpoint`` without credentials, query or fragment (fit for messages and results)."""
    p = urlsplit(endpoint)
    host = p.hostname or ""
    return f"{p.scheme}://{host}{f':{p.port}' if p.port else ''}{p.path}".rstrip("/")


def is_hf_hub(endpoint: str) -> bool:
    host = (urlsplit(endpoint).hostname or "").lower()
    return host == "huggingface.co" or host.endswith(".huggingface.co")


@contextlib.contextmanager
def xet_off_for(endpoint: str):
    """Switch Xet uploads off for the duration, unless ``endpoint`` is huggingface.co (other Hub
    servers, ours included, speak plain LFS)."""
    from huggingface_hub import constants
    if is_hf_hub(endpoint):
        yield
        return
    saved = constants.HF_HUB_DISABLE_XET, os.environ.get("HF_HUB_DISABLE_XET")
    constants.HF_HUB_DISABLE_XET = True
    os.environ["HF_HUB_DISABLE_XET"] = "1"
    try:
        yield
    finally:
        constants.HF_HUB_DISABLE_XET = saved[0]
        if saved[1] is None:
            os.environ.pop("HF_HUB_DISABLE_XET", None)
        else:
            os.environ["HF_HUB_DISABLE_XET"] = saved[1]
