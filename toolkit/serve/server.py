"""A TGI-compatible text-generation server over the local engine, with multi-LoRA.

Routes as TGI documents them: ``POST /generate``, ``/generate_stream`` (SSE), ``/`` (``stream``
flag), ``/v1/chat/completions`` (OpenAI, ``stream``), ``/tokenize``; ``GET /info``, ``/health``,
``/metrics``. LoRA adapters are loaded at start and picked per request by ``adapter_id`` (chat:
``model``). Concurrent requests share forward passes (:mod:`toolkit.serve.batcher`).

Example:
    >>> with TGIServer("tiny-random", adapters={"math": "runs/x/adapter"}) as server:  # doctest: +SKIP
    ...     InferenceClient(server.url).text_generation("2+2=", max_new_tokens=4, adapter_id="math")
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Callable

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ..background import BackgroundServer
from ..generation.engine import LocalEngine
from .batcher import Batcher, Job
from .params import Limits, Parsed, ValidationError, parse_chat, parse_generate

VERSION = "2.4.1-qup"
FINISH_OPENAI = {"eos_token": "stop", "stop": "stop", "length": "length"}


def _error(status: int, message: str, error_type: str) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": error_type}, status_code=status)


def _sse(obj) -> bytes:
    return f"data:{json.dumps(obj)}\n\n".encode()


class _App:
    """The route handlers, bound to one engine + batcher."""

    def __init__(self, engine: LocalEngine, batcher: Batcher):
        self.engine, self.batcher = engine, batcher
        tok = engine.tokenizer
        self.special_ids = set(tok.all_special_ids)
        self.limits = Limits(max_input_tokens=engine.max_length - 1, max_total_tokens=engine.max_length,
                             adapters=tuple(engine.adapters), encode=engine.encode,
                             decode=lambda ids: tok.decode(ids))

    # ------------------------------------------------------------------ helpers
    async def _body(self, request: HTTPRequest):
        try:
            return json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValidationError(f"Failed to deserialize the JSON body: {e}") from None

    def _token(self, tok: int, text: str, logprob: float) -> dict:
        return {"id": tok, "text": text, "logprob": logprob, "special": tok in self.special_ids}

    def _details(self, job: Job, parsed: Parsed, completion) -> dict:
        sp = parsed.request.params
        prefill = []
        if parsed.decoder_input_details:
            ids, lps = parsed.input_ids, [None] + list(job.prefill or [])
            prefill = [{"id": i, "text": self.engine.tokenizer.decode([i]), "logprob": lp}
                       for i, lp in zip(ids, lps)]
        return {"finish_reason": "stop_sequence" if completion.finish_reason == "stop"
                else completion.finish_reason,
                "generated_tokens": len(job.tokens), "seed": sp.seed if not sp.greedy else None,
                "prefill": prefill, "tokens": [self._token(*t) for t in job.tokens]}

    async def _run(self, parsed: Parsed) -> tuple[Job, object]:
        m = self.batcher.metrics
        m.request_count += 1
        job = self.batcher.submit(parsed.request, asyncio.get_running_loop(),
                                  want_prefill=parsed.decoder_input_details)
        while True:
            event = await job.events.get()
            if event[0] == "done":
                m.request_success += 1
                return job, event[1]
            if event[0] == "error":
                m.request_failure += 1
                raise RuntimeError(str(event[1]))

    async def _events(self, parsed: Parsed):
        """(token dict, Completion | None) pairs; the last one carries the completion."""
        m = self.batcher.metrics
        m.request_count += 1
        job = self.batcher.submit(parsed.request, asyncio.get_running_loop())
        held = None
        while True:
            event = await job.events.get()
            if event[0] == "token":
                if held is not None:
                    yield held, None
                held = self._token(*event[1:])
            elif event[0] == "done":
                m.request_success += 1
                yield held or {"id": 0, "text": "", "logprob": None, "special": True}, (job, event[1])
                return
            else:
                m.request_failure += 1
                raise RuntimeError(str(event[1]))

    # ------------------------------------------------------------------ TGI routes
    async def generate(self, request: HTTPRequest, compat: bool = False, stream: bool = False):
        try:
            parsed = parse_generate(await self._body(request), self.limits, stream=stream)
        except ValidationError as e:
            return _error(422, str(e), "validation")
        if parsed.stream:
            return StreamingResponse(self._stream_generate(parsed), media_type="text/event-stream")
        try:
            job, c = await self._run(parsed)
        except RuntimeError as e:
            return _error(424, f"Request failed during generation: {e}", "generation")
        text = parsed.request.prompt + c.text if parsed.return_full_text else c.text
        out = {"generated_text": text}
        if parsed.details:
            out["details"] = self._details(job, parsed, c)
        return JSONResponse([out] if compat else out)

    async def _stream_generate(self, parsed: Parsed):
        index = 0
        try:
            async for token, done in self._events(parsed):
                index += 1
                event = {"index": index, "token": token, "top_tokens": None,
                         "generated_text": None, "details": None}
                if done is not None:
                    job, c = done
                    d = self._details(job, parsed, c)
                    event["generated_text"] = (parsed.request.prompt + c.text
                                               if parsed.return_full_text else c.text)
                    event["details"] = {"finish_reason": d["finish_reason"], "input_length":
                                        len(parsed.input_ids), "generated_tokens":
                                        d["generated_tokens"], "seed": d["seed"]}
                yield _sse(event)
        except RuntimeError as e:
            yield _sse({"error": f"Request failed during generation: {e}", "error_type": "generation"})

    async def compat(self, request: HTTPRequest):
        return await self.generate(request, compat=True)

    async def generate_stream(self, request: HTTPRequest):
        return await self.generate(request, stream=True)

    async def tokenize(self, request: HTTPRequest):
        try:
            body = await self._body(request)
            if not isinstance(body, dict) or not isinstance(body.get("inputs"), str):
                raise ValidationError("request body must be a JSON object with `inputs`")
        except ValidationError as e:
            return _error(422, str(e), "validation")
        enc = self.engine.tokenizer(body["inputs"], add_special_tokens=False, return_offsets_mapping=True)
        return JSONResponse([{"id": i, "text": body["inputs"][a:b], "start": a, "stop": b}
                             for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"])])

    async def info(self, request: HTTPRequest):
        e = self.engine
        return JSONResponse({
            "model_id": e.model_id, "model_sha": e.model_revision, "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": 128, "max_best_of": 1, "max_stop_sequences": 4,
            "max_input_tokens": self.limits.max_input_tokens, "max_total_tokens": e.max_length,
            "validation_workers": 1, "max_client_batch_size": self.batcher.max_batch_size,
            "router": "qup-serve", "version": VERSION, "sha": None, "docker_label": None,
            "model_dtype": f"torch.{e.dtype}", "adapters": list(e.adapters)})

    async def health(self, request: HTTPRequest):
        if not self.batcher._thread.is_alive():
            return _error(503, "unhealthy", "healthcheck")
        return Response(status_code=200)

    async def metrics(self, request: HTTPRequest):
        return PlainTextResponse(self.batcher.metrics.prometheus())

    # ------------------------------------------------------------------ OpenAI chat
    async def chat(self, request: HTTPRequest):
        try:
            body = await self._body(request)
            parsed = parse_chat(body, self.limits, self.engine.render_chat)
        except ValidationError as e:
            return _error(422, str(e), "validation")
        head = {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "created": int(time.time()),
                "model": body.get("model") or self.engine.model_id, "system_fingerprint": VERSION}
        if parsed.stream:
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(self._stream_chat(parsed, head, usage), media_type="text/event-stream")
        try:
            job, c = await self._run(parsed)
        except RuntimeError as e:
            return _error(424, f"Request failed during generation: {e}", "generation")
        return JSONResponse({**head, "object": "chat.completion", "choices": [{
            "index": 0, "message": {"role": "assistant", "content": c.text}, "logprobs": None,
            "finish_reason": FINISH_OPENAI[c.finish_reason]}], "usage": self._usage(job, c)})

    @staticmethod
    def _usage(job: Job, c) -> dict:
        return {"prompt_tokens": c.prompt_tokens, "completion_tokens": len(job.tokens),
                "total_tokens": c.prompt_tokens + len(job.tokens)}

    async def _stream_chat(self, parsed: Parsed, head: dict, usage: bool):
        chunk = {**head, "object": "chat.completion.chunk"}
        try:
            async for token, done in self._events(parsed):
                text = "" if token["special"] else token["text"]
                choice = {"index": 0, "delta": {"role": "assistant", "content": text},
                          "logprobs": None, "finish_reason": None}
                if done is not None:
                    choice["finish_reason"] = FINISH_OPENAI[done[1].finish_reason]
                yield _sse({**chunk, "choices": [choice], "usage": None})
            if usage:
                yield _sse({**chunk, "choices": [], "usage": self._usage(*done)})
        except RuntimeError as e:
            yield _sse({"error": f"Request failed during generation: {e}", "error_type": "generation"})
        yield b"data: [DONE]\n\n"

    def routes(self) -> list[Route]:
        return [Route("/", self.compat, methods=["POST"]),
                Route("/generate", self.generate, methods=["POST"]),
                Route("/generate_stream", self.generate_stream, methods=["POST"]),
                Route("/tokenize", self.tokenize, methods=["POST"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/info", self.info), Route("/health", self.health),
                Route("/metrics", self.metrics)]


class TGIServer(BackgroundServer):
    """Serve ``model`` (+ LoRA ``adapters``: name -> dir) over TGI's HTTP API in a background thread.

    ``dtype``: ``auto`` (bf16 where native, else fp32) or a name, as for ``LocalEngine``.
    ``wrap_app`` (tests only) wraps the ASGI app, e.g. with a fault-injecting middleware.
    """

    def __init__(self, model: str, adapters: dict[str, str] | None = None, host: str = "127.0.0.1",
                 port: int = 0, max_batch_size: int = 16, dtype="auto",
                 wrap_app: Callable | None = None):
        self.engine = LocalEngine(model, adapters=adapters, batch_size=max_batch_size, dtype=dtype)
        self.batcher = Batcher(self.engine, max_batch_size=max_batch_size)
        self.app = Starlette(routes=_App(self.engine, self.batcher).routes())
        super().__init__(wrap_app(self.app) if wrap_app else self.app, host, port)

    @property
    def metrics(self):
        return self.batcher.metrics

    def start(self, timeout: float = 30) -> "TGIServer":
        self.batcher.start()
        return super().start(timeout)

    def stop(self) -> None:
        if self._server is not None:
            super().stop()
            self.batcher.stop()


def serve(model: str, adapters: dict[str, str] | None = None, host: str = "127.0.0.1",
          port: int = 8080, max_batch_size: int = 16, dtype: str = "auto") -> None:
    """Run the server in the foreground until interrupted (``qup serve``)."""
    server = TGIServer(model, adapters, host, port, max_batch_size, dtype=dtype)
    server.batcher.start()
    try:
        uvicorn.run(server.app, host=host, port=port, log_level="info")
    finally:
        server.batcher.stop()
