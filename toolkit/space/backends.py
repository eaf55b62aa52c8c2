"""Generation backends of the Space: text streamed token by token for (model key, prompt).

A model key is ``"base"`` or a variant name; each backend maps it to the base model or a LoRA.
What serves the experiment's base model is a model role (:func:`role`): ``transformers`` in-process
or an ``endpoint`` (TGI), built by the role's one builder.

- :class:`LocalBackend`: transformers + PEFT in-process, as a CPU Space runs it: the base model
  loaded once, every adapter loaded next to it (multi-adapter ``PeftModel``), one generation at a
  time (the engine switches adapters per request; a lock serialises requests).
- :class:`TGIBackend`: a TGI endpoint started with the adapters (``LORA_ADAPTERS=<repo ids>``, or
  ``qup serve --adapter <repo id>=<dir>``); each request names its adapter by ``adapter_id``. The
  endpoint's URL and token stay in this object (never in the page).

Example:
    >>> backend = LocalBackend(api, experiment)                              # doctest: +SKIP
    >>> "".join(backend.stream("rft", [{"role": "user", "content": "2+3?"}], max_new_tokens=16))  # doctest: +SKIP
"""
from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Iterator

from ..generation.base import Request, SamplingParams
from ..generation.roles import EndpointOptions, RoleConfig, TransformersOptions
from ..models import PRESETS, local_spec
from .discovery import Experiment
from .leaderboard import BASE


def _download(api, repo_id: str, revision: str, patterns=None) -> str:
    return api.snapshot_download(repo_id, revision=revision, allow_patterns=patterns)


def base_model_path(api, hub_id: str, tokenizer_only: bool = False) -> str:
    """A loadable spec of the base model: its preset (local cache) when it is one, else a download
    from the Space's Hub (``api``'s endpoint, not a process-wide setting)."""
    from ..models import PROVENANCE
    from ..weights import cache_dir
    spec = local_spec(hub_id)
    if spec in PRESETS and (cache_dir() / "models" / spec / PROVENANCE).is_file():
        return spec                       # prepared here already (e.g. by `make demo`)
    patterns = ["*.json", "*.jinja", "*.txt", "*.model"] if tokenizer_only else None
    try:
        return _download(api, hub_id, "main", patterns)
    except Exception:  # noqa: BLE001 - not on this Hub: a preset can still be prepared locally
        if spec in PRESETS:
            return spec
        raise


class LocalBackend:
    """The base model + every adapter of ``exp`` in this process (see module docstring)."""

    kind = "local"

    def __init__(self, api, exp: Experiment, dtype: str = "auto"):
        adapters = {a.variant: _download(api, a.repo_id, a.revision) for a in exp.adapters}
        self.engine = role(base_model_path(api, exp.base_model), dtype=dtype).generator(adapters)
        self.keys = [BASE, *adapters]
        self._lock = threading.Lock()

    def render(self, messages: list[dict]) -> str:
        return self.engine.render_chat(messages)

    def stream(self, key: str, messages: list[dict], max_new_tokens: int) -> Iterator[str]:
        """Greedy text pieces for model ``key`` (as evaluation decodes: pass@1 greedy)."""
        import torch
        if key not in self.keys:
            raise ValueError(f"unknown model {key!r}")
        request = Request(self.render(messages), SamplingParams(max_new_tokens=max_new_tokens,
                                                                do_sample=False, temperature=0.0),
                          None if key == BASE else key)
        pieces: queue.Queue = queue.Queue()
        done, stop, eos = object(), threading.Event(), self.engine.eos_ids   # EOS is not shown

        def work():
            try:
                with self._lock, torch.inference_mode():
                    self.engine.generate_batch([request], on_token=lambda i, tok, text, lp: tok in eos or pieces.put(text),
                                               cancelled=lambda i: stop.is_set())
            except Exception as e:  # noqa: BLE001 - handed to the reader
                pieces.put(e)
            pieces.put(done)
        threading.Thread(target=work, daemon=True).start()
        try:
            while (item := pieces.get()) is not done:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:   # the visitor left (generator closed): stop decoding
            stop.set()


class TGIBackend:
    """A TGI endpoint with multi-LoRA; adapters are selected by ``adapter_id`` = their repo id."""

    kind = "tgi"

    def __init__(self, api, exp: Experiment, url: str, token: str | None = None):
        from huggingface_hub import InferenceClient
        from transformers import AutoTokenizer
        self._client = InferenceClient(model=url, token=token, timeout=120)
        self.adapter_ids = {a.variant: a.repo_id for a in exp.adapters}
        self.keys = [BASE, *self.adapter_ids]
        self.tokenizer = AutoTokenizer.from_pretrained(_tokenizer_dir(api, exp))

    def render(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def stream(self, key: str, messages: list[dict], max_new_tokens: int) -> Iterator[str]:
        if key not in self.keys:
            raise ValueError(f"unknown model {key!r}")
        yield from self._client.text_generation(
            self.render(messages), stream=True, max_new_tokens=max_new_tokens, do_sample=False,
            adapter_id=self.adapter_ids.get(key))


def _tokenizer_dir(api, exp: Experiment) -> str:
    """The chat template and tokenizer: the base preset's, else an adapter repo's copy of them."""
    if exp.adapters:
        a = exp.adapters[0]
        path = _download(api, a.repo_id, a.revision, ["tokenizer*", "special_tokens_map.json", "*.jinja"])
        if (Path(path) / "tokenizer_config.json").is_file():
            return path
    from ..models import resolve_model
    spec = base_model_path(api, exp.base_model, tokenizer_only=True)
    return resolve_model(spec) if spec in PRESETS else spec


def role(model: str, url: str = "", dtype: str = "auto") -> RoleConfig:
    """The Space's base-model role: one sequence at a time in-process (streamed token by token,
    adapters switched per request), or the TGI endpoint at ``url``."""
    if url:
        return RoleConfig(model, backend="endpoint", endpoint=EndpointOptions(urls=[url], api="tgi"))
    return RoleConfig(model, backend="transformers", dtype=dtype, transformers=TransformersOptions(batch_size=1))


def make_backend(api, exp: Experiment, settings):
    """The backend ``settings.backend`` names (its URL checked as a role's endpoint)."""
    if settings.backend == "tgi":
        url = role(exp.base_model, settings.tgi_url).endpoint.urls[0]
        return TGIBackend(api, exp, url, settings.tgi_token)
    return LocalBackend(api, exp)
