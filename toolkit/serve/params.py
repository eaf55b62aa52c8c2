"""TGI request validation: TGI's parameter names, defaults, rules and error messages.

Sampling follows TGI: greedy unless ``do_sample`` or a warper (temperature != 1, top_k, top_p < 1)
is set; ``temperature``/``top_k``/``top_p`` out of range are rejected, as is a prompt that does
not fit ``max_input_tokens`` or a prompt + ``max_new_tokens`` over ``max_total_tokens``.

Example:
    >>> req = parse_generate({"inputs": "2+2=", "parameters": {"max_new_tokens": 4}}, limits)  # doctest: +SKIP
"""
from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass

from ..generation.base import Request, SamplingParams

DEFAULT_MAX_NEW_TOKENS = 100
MAX_STOP_SEQUENCES = 4
MAX_SEED = 2**64 - 1       # TGI's seed is a u64


class ValidationError(ValueError):
    """A bad request: answered with HTTP 422 and ``error_type: validation`` like TGI."""


class GenerationError(RuntimeError):
    """The engine failed this request: HTTP 424 (``error_type: generation``)."""


@dataclass
class Limits:
    max_input_tokens: int
    max_total_tokens: int
    adapters: tuple[str, ...]
    encode: object      # str -> list[int]
    decode: object      # list[int] -> str
    token_chars: int = 64   # no token covers more characters: longer inputs are rejected untokenised
    max_client_batch_size: int = 4


@dataclass
class Parsed:
    request: Request
    input_ids: list[int]
    details: bool = True
    decoder_input_details: bool = False
    return_full_text: bool = False
    stream: bool = False


def _get(params: dict, name: str, kind, default=None):
    value = params.get(name)
    if value is None:
        return default
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValidationError(f"`{name}` must be of type {kind.__name__}, got {value!r}")
    if kind is float:  # TGI reads floats as f32: 1e-300 is 0, 1e39 is inf
        if not math.isfinite(ctypes.c_float(value).value):
            raise ValidationError(f"`{name}` must be a finite number, got {value!r}")
        if ctypes.c_float(value).value == 0:
            value = 0.0
    return value


def _unsupported(params: dict, name: str, neutral) -> None:
    value = params.get(name)
    if value is not None and value != neutral:
        raise ValidationError(f"`{name}` is not supported by this server (got {value!r})")


def sampling(params: dict, limits: Limits, input_len: int, openai: bool = False) -> SamplingParams:
    """TGI's sampling rules (``openai``: chat semantics, temperature 0 = greedy)."""
    temperature = _get(params, "temperature", float)
    if openai and temperature == 0:
        temperature, do_sample = None, False
    else:
        do_sample = _get(params, "do_sample", bool, openai)
    if temperature is not None and temperature <= 0:
        raise ValidationError("`temperature` must be strictly positive")
    top_p = _get(params, "top_p", float)
    if top_p is not None and not (0 < top_p < 1 or (openai and top_p == 1)):
        raise ValidationError("`top_p` must be > 0.0 and < 1.0")
    top_k = _get(params, "top_k", int)
    if top_k is not None and top_k <= 0:
        raise ValidationError("`top_k` must be strictly positive")
    name = "max_tokens" if openai else "max_new_tokens"
    max_new = _get(params, name, int, DEFAULT_MAX_NEW_TOKENS)
    if max_new <= 0:
        raise ValidationError(f"`{name}` must be strictly positive")
    if input_len + max_new > limits.max_total_tokens:
        raise ValidationError(
            f"`inputs` tokens + `{name}` must be <= {limits.max_total_tokens}. "
            f"Given: {input_len} `inputs` tokens and {max_new} `{name}`")
    stop = params.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise ValidationError("`stop` must be a list of strings")
    if len(stop) > MAX_STOP_SEQUENCES:
        raise ValidationError(f"`stop` supports up to {MAX_STOP_SEQUENCES} stop sequences. "
                              f"Given: {len(stop)}")
    seed = _get(params, "seed", int)
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise ValidationError(f"`seed` must be >= 0 and <= {MAX_SEED}, got {seed}")
    for name, neutral in (("repetition_penalty", 1.0), ("frequency_penalty", 0.0),
                          ("presence_penalty", 0.0), ("typical_p", 1.0), ("best_of", 1),
                          ("watermark", False), ("grammar", None), ("top_n_tokens", 0),
                          ("n", 1), ("tools", None), ("response_format", None)):
        _unsupported(params, name, neutral)
    warped = (temperature not in (None, 1.0)) or top_k is not None or top_p not in (None, 1.0)
    return SamplingParams(max_new_tokens=max_new, temperature=temperature or 1.0,
                          top_p=top_p or 1.0, top_k=top_k or 0, do_sample=do_sample or warped,
                          stop=stop, seed=seed)


def _adapter(name, limits: Limits) -> str | None:
    if name is None or name == "":
        return None
    if not isinstance(name, str) or name not in limits.adapters:
        raise ValidationError(f"adapter_id {name!r} is not loaded; available: {list(limits.adapters)}")
    return name


def prompt_ids(inputs, limits: Limits, truncate=None) -> tuple[str, list[int]]:
    if not isinstance(inputs, str):
        raise ValidationError("`inputs` must be a string")
    if not inputs:
        raise ValidationError("`inputs` cannot be empty")
    if truncate is not None:
        if not isinstance(truncate, int) or isinstance(truncate, bool) or not (
                0 < truncate <= limits.max_input_tokens):
            raise ValidationError(f"`truncate` must be strictly positive and less than "
                                  f"{limits.max_input_tokens}. Given: {truncate}")
        # only the tail can survive truncation: tokenise no more of it than can make `truncate` tokens
        tail = inputs[-truncate * limits.token_chars:]
        ids = limits.encode(tail)
        if len(ids) > truncate or len(tail) < len(inputs):
            ids = ids[-truncate:]
            inputs = limits.decode(ids)
    else:
        if len(inputs) > limits.max_input_tokens * limits.token_chars:   # surely too many tokens
            raise ValidationError(f"`inputs` must have less than {limits.max_input_tokens} tokens. "
                                  f"Given: {len(inputs)} characters, over "
                                  f"{len(inputs) // limits.token_chars} tokens")
        ids = limits.encode(inputs)
    if len(ids) > limits.max_input_tokens:
        raise ValidationError(f"`inputs` must have less than {limits.max_input_tokens} tokens. "
                              f"Given: {len(ids)}")
    return inputs, ids


def parse_generate(body, limits: Limits, stream: bool = False) -> Parsed:
    """A TGI ``GenerateRequest`` / ``CompatGenerateRequest`` body as a :class:`Parsed` job."""
    if not isinstance(body, dict) or "inputs" not in body:
        raise ValidationError("request body must be a JSON object with `inputs`")
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise ValidationError("`parameters` must be a JSON object")
    inputs, ids = prompt_ids(body["inputs"], limits, params.get("truncate"))
    sp = sampling(params, limits, len(ids))
    return Parsed(Request(inputs, sp, _adapter(params.get("adapter_id"), limits)), ids,
                  details=_get(params, "details", bool, True),
                  decoder_input_details=_get(params, "decoder_input_details", bool, False),
                  return_full_text=_get(params, "return_full_text", bool, False),
                  stream=_get(body, "stream", bool, stream))


def _content(i: int, content) -> str:
    """A message's ``content``: a string, null, or a list of ``{"type": "text", "text": ...}``."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for c in content:
            if not isinstance(c, dict) or c.get("type", "text") != "text" or not isinstance(
                    c.get("text"), str):
                raise ValidationError(f"messages[{i}].content: only text parts "
                                      f"({{\"type\": \"text\", \"text\": ...}}) are supported")
            parts.append(c["text"])
        return "".join(parts)
    raise ValidationError(f"messages[{i}].content must be a string or a list of text parts")


def _openai_common(body, limits: Limits) -> tuple[str | None, bool]:
    """The adapter named by ``model`` (if loaded) and the ``stream`` flag, type-checked."""
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ValidationError("`model` must be a string")
    opts = body.get("stream_options")
    if opts is not None and not (isinstance(opts, dict) and isinstance(
            opts.get("include_usage", False), bool)):
        raise ValidationError("`stream_options` must be an object like {\"include_usage\": true}")
    return (model if model in limits.adapters else None), _get(body, "stream", bool, False)


def parse_chat(body, limits: Limits, render_chat) -> Parsed:
    """An OpenAI/TGI ``ChatRequest``; ``model`` names a LoRA adapter when one is loaded by it."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        raise ValidationError("request body must be a JSON object with non-empty `messages`")
    messages = []
    for i, m in enumerate(body["messages"]):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ValidationError(f"messages[{i}] must be an object with a string `role` and `content`")
        messages.append({"role": m["role"], "content": _content(i, m.get("content"))})
    adapter, stream = _openai_common(body, limits)
    try:
        rendered = render_chat(messages)
    except Exception as e:   # e.g. the template's raise_exception on roles out of order
        raise ValidationError(f"Template error: {e}") from None
    inputs, ids = prompt_ids(rendered, limits)
    return Parsed(Request(inputs, sampling(body, limits, len(ids), openai=True), adapter), ids,
                  stream=stream)


def parse_completion(body, limits: Limits) -> list[Parsed]:
    """An OpenAI ``CompletionRequest`` (TGI's ``/v1/completions``): one job per prompt."""
    if not isinstance(body, dict) or "prompt" not in body:
        raise ValidationError("request body must be a JSON object with `prompt`")
    prompts = body["prompt"]
    prompts = [prompts] if isinstance(prompts, str) else prompts
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValidationError("`prompt` must be a string or a non-empty list of strings")
    if len(prompts) > limits.max_client_batch_size:
        raise ValidationError(f"Number of prompts exceeds the maximum allowed batch size of "
                              f"{limits.max_client_batch_size}")
    if body.get("suffix") is not None:
        raise ValidationError("Suffix is not supported and can be achieved by preprocessing the prompt.")
    for name in ("echo", "logprobs"):
        if body.get(name):
            raise ValidationError(f"`{name}` is not supported by this server (got {body[name]!r})")
    adapter, stream = _openai_common(body, limits)
    out = []
    for prompt in prompts:
        inputs, ids = prompt_ids(prompt, limits)
        out.append(Parsed(Request(inputs, sampling(body, limits, len(ids), openai=True), adapter),
                          ids, stream=stream))
    return out
