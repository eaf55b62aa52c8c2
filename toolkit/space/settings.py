"""The Space's configuration (environment variables) and its abuse limits.

Everything comes from the environment, as on a Hugging Face Space (Settings → Variables and
secrets). Secrets (``HF_TOKEN``, ``QUP_SPACE_TGI_TOKEN``) and the TGI URL are used server-side only;
:meth:`SpaceSettings.public` is what the page may show.

| variable | default | meaning |
|---|---|---|
| ``HF_ENDPOINT`` | huggingface.co | the Hub to discover experiments on |
| ``HF_TOKEN`` | — | read token for private repos (never shown) |
| ``QUP_SPACE_EXPERIMENT`` | the newest | the experiment's dataset repo (``org/qup-mawps-...``) |
| ``QUP_SPACE_AUTHOR`` | the owner | the one namespace whose cards the Space reads |
| ``SPACE_ID`` | set by the Hub | the Space's own repo: its namespace is the owner (else the token's user) |
| ``QUP_SPACE_BACKEND`` | ``local`` | ``local`` (transformers + PEFT in-process) or ``tgi`` |
| ``QUP_SPACE_TGI_URL`` | — | the TGI endpoint (multi-LoRA; adapters by their repo id) |
| ``QUP_SPACE_TGI_TOKEN`` | — | bearer token of that endpoint |
| ``QUP_SPACE_PROBLEMS`` | the model-index dataset | benchmark problems: a source as ``toolkit.sources`` takes it |
| ``QUP_SPACE_MAX_CHARS`` | 1000 | longest question accepted |
| ``QUP_SPACE_MAX_NEW_TOKENS`` | 256 | cap of ``max_new_tokens`` (the slider's maximum) |
| ``QUP_SPACE_CONCURRENCY`` | 2 | comparisons running at once (Gradio queue) |
| ``QUP_SPACE_QUEUE`` | 16 | comparisons waiting; beyond, a visitor is told to retry |

Example:
    >>> s = SpaceSettings.from_env({"QUP_SPACE_MAX_CHARS": "200", "QUP_SPACE_TGI_TOKEN": "hf_s3cret"})
    >>> s.max_chars, "hf_s3cret" in str(s.public())
    (200, False)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields

from ..errors import QupError

MAX_MODELS = 4


class LimitError(QupError, ValueError):
    """A visitor's input is over a limit (shown as a message; the app keeps serving)."""


@dataclass(frozen=True)
class SpaceSettings:
    endpoint: str = "https://huggingface.co"
    token: str | None = None
    experiment: str = ""
    author: str = ""
    space_id: str = ""
    backend: str = "local"
    tgi_url: str = ""
    tgi_token: str | None = None
    problems: str = ""
    max_chars: int = 1000
    max_new_tokens: int = 256
    concurrency: int = 2
    queue: int = 16

    ENV = {"endpoint": "HF_ENDPOINT", "token": "HF_TOKEN", "experiment": "QUP_SPACE_EXPERIMENT",
           "author": "QUP_SPACE_AUTHOR", "space_id": "SPACE_ID", "backend": "QUP_SPACE_BACKEND",
           "tgi_url": "QUP_SPACE_TGI_URL",
           "tgi_token": "QUP_SPACE_TGI_TOKEN", "problems": "QUP_SPACE_PROBLEMS",
           "max_chars": "QUP_SPACE_MAX_CHARS", "max_new_tokens": "QUP_SPACE_MAX_NEW_TOKENS",
           "concurrency": "QUP_SPACE_CONCURRENCY", "queue": "QUP_SPACE_QUEUE"}
    SECRET = ("token", "tgi_url", "tgi_token")

    @classmethod
    def from_env(cls, env=None) -> "SpaceSettings":
        """Settings from ``env`` (default ``os.environ``); a bad value names its variable."""
        env = os.environ if env is None else env
        values = {}
        for f in fields(cls):
            raw = env.get(cls.ENV[f.name])
            if raw in (None, ""):
                continue
            if f.type == "int":
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise QupError(f"{cls.ENV[f.name]} must be an integer, got {raw!r}") from None
                if values[f.name] < 1:
                    raise QupError(f"{cls.ENV[f.name]} must be >= 1, got {raw!r}")
            else:
                values[f.name] = raw.strip()
        s = cls(**values)
        if s.backend not in ("local", "tgi"):
            raise QupError(f"QUP_SPACE_BACKEND must be 'local' or 'tgi', got {s.backend!r}")
        if s.backend == "tgi" and not s.tgi_url:
            raise QupError("QUP_SPACE_BACKEND=tgi needs QUP_SPACE_TGI_URL")
        return s

    def public(self) -> dict:
        """What the page may show: everything but secrets and the private endpoint."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.SECRET}


def check_question(question: str | None, settings: SpaceSettings) -> str:
    """The stripped question, or :class:`LimitError` saying what is wrong.

    >>> check_question("  2+2?  ", SpaceSettings())
    '2+2?'
    """
    question = (question or "").strip()
    if not question:
        raise LimitError("Type a question or pick a benchmark problem first.")
    if len(question) > settings.max_chars:
        raise LimitError(f"The question is {len(question)} characters long; this demo accepts at most "
                         f"{settings.max_chars}. Please shorten it.")
    return question


def check_models(models: list[str] | None) -> list[str]:
    """2–4 distinct models, in the order picked."""
    models = list(dict.fromkeys(models or []))
    if not 2 <= len(models) <= MAX_MODELS:
        raise LimitError(f"Pick between 2 and {MAX_MODELS} models to compare (got {len(models)}).")
    return models


def clamp_new_tokens(value, settings: SpaceSettings) -> int:
    """``max_new_tokens`` within ``[1, settings.max_new_tokens]`` (the UI slider can be bypassed)."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise LimitError(f"max_new_tokens must be a whole number, got {value!r}") from None
    if not 1 <= n <= settings.max_new_tokens:
        raise LimitError(f"max_new_tokens must be between 1 and {settings.max_new_tokens}, got {n}.")
    return n
