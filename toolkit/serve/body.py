"""Request bodies read like TGI's router reads them (bounded, strict JSON, parsed off the event
loop), and the SSE framing of responses.

The body may be at most ``payload_limit`` bytes (TGI's ``--payload-limit``: HTTP 413 beyond);
JSON is strict (no ``NaN``/``Infinity``, nesting <= 128 like serde_json, no lone surrogates) and
any other defect is a :class:`~toolkit.serve.params.ValidationError` (HTTP 422), never a 500.

Example:
    >>> body, parsed = await parse_body(request, 2_000_000, parse_generate, limits)  # doctest: +SKIP
"""
from __future__ import annotations

import json

import anyio

from .params import ValidationError

MAX_DEPTH = 128


class PayloadTooLarge(ValueError):
    """The body is over the payload limit: HTTP 413."""


def _constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def loads(raw: bytes):
    """Strict JSON from ``raw``; :class:`ValidationError` for anything serde_json would refuse."""
    try:
        obj = json.loads(raw, parse_constant=_constant)
    except RecursionError:
        raise ValidationError("Failed to deserialize the JSON body: recursion limit exceeded") from None
    except ValueError as e:   # JSONDecodeError, UnicodeDecodeError, NaN/Infinity
        raise ValidationError(f"Failed to deserialize the JSON body: {e}") from None
    stack = [(obj, 1)]
    while stack:   # iterative: a deep body must not blow our own stack
        value, depth = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValidationError("Failed to deserialize the JSON body: "
                                      "lone surrogate in a string") from None
        elif isinstance(value, (list, dict)):
            if depth > MAX_DEPTH:
                raise ValidationError("Failed to deserialize the JSON body: recursion limit exceeded")
            items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
            for k, v in items:
                if k is not None:
                    stack.append((k, depth))
                stack.append((v, depth + 1))
    return obj


async def read_body(request, limit: int) -> bytes:
    """The raw body, at most ``limit`` bytes (the rest is drained, not kept: the client sees 413)."""
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        raise PayloadTooLarge(f"Payload of {size} bytes is over the limit of {limit} bytes")
    return b"".join(chunks)


async def parse_body(request, limit: int, parse, *args):
    """``(body, parse(body, *args))``, JSON decoding and ``parse`` (tokenisation) in a worker thread."""
    raw = await read_body(request, limit)

    def work():
        body = loads(raw)
        return body, parse(body, *args)
    return await anyio.to_thread.run_sync(work)


def sse(obj) -> bytes:
    """One server-sent event carrying ``obj`` as JSON (TGI's ``data:`` framing)."""
    return f"data:{json.dumps(obj)}\n\n".encode()
