"""TGI request validation: TGI's parameter names, defaults, rules and error messages.

Sampling follows TGI: greedy unless ``do_sample`` or a warper (temperature != 1, top_k, top_p < 1)
is set; ``temperature``/``top_k``/``top_p`` out of range are rejected, as is a prompt that does
not fit ``max_input_tokens`` or a prompt + ``max_new_tokens`` over ``max_total_tokens``.

Example:
    >>> req = parse_generate({"inputs": "2+2=", "parameters": {"max_new_tokens": 4}}, limits)  # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass

from ..generation.base import Request, SamplingParams

DEFAULT_MAX_NEW_TOKENS = 100
MAX_STOP_SEQUENCES = 4


class ValidationError(ValueError):
    """A bad request: answered with HTTP 422 and ``error_type: validation`` like TGI."""


@dataclass
class Limits:
    max_input_tokens: int
    max_total_tokens: int
    adapters: tuple[str, ...]
    encode: object      # str -> list[int]
    decode: object      # list[int] -> str


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
    if seed is not None and seed < 0:
        raise ValidationError("`seed` must be >= 0")
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
    ids = limits.encode(inputs)
    if truncate is not None:
        if not isinstance(truncate, int) or truncate <= 0 or truncate > limits.max_input_tokens:
            raise ValidationError(f"`truncate` must be strictly positive and less than "
                                  f"{limits.max_input_tokens}. Given: {truncate}")
        if len(ids) > truncate:
            ids = ids[-truncate:]
            inputs = limits.decode(ids)
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
                  stream=bool(body.get("stream", stream)))


def parse_chat(body, limits: Limits, render_chat) -> Parsed:
    """An OpenAI/TGI ``ChatRequest``; ``model`` names a LoRA adapter when one is loaded by it."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        raise ValidationError("request body must be a JSON object with non-empty `messages`")
    messages = []
    for i, m in enumerate(body["messages"]):
        if not isinstance(m, dict) or "role" not in m:
            raise ValidationError(f"messages[{i}] must be an object with `role` and `content`")
        content = m.get("content") or ""
        if isinstance(content, list):  # [{"type": "text", "text": ...}]
            content = "".join(c.get("text", "") for c in content if isinstance(c, dict))
        messages.append({"role": m["role"], "content": content})
    inputs, ids = prompt_ids(render_chat(messages), limits)
    model = body.get("model")
    adapter = model if isinstance(model, str) and model in limits.adapters else None
    return Parsed(Request(inputs, sampling(body, limits, len(ids), openai=True), adapter), ids,
                  stream=bool(body.get("stream", False)))
