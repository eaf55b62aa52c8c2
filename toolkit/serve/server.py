"""A TGI-compatible text-generation server over vLLM or the transformers engine, with multi-LoRA.

Routes as TGI documents them: ``POST /generate``, ``/generate_stream`` (SSE), ``/`` (``stream``
flag), ``/v1/chat/completions`` and ``/v1/completions`` (OpenAI, ``stream``), ``/tokenize``;
``GET /info``, ``/health``, ``/metrics``, ``/v1/models``. LoRA adapters are loaded at start and
picked per request by ``adapter_id`` (OpenAI routes: ``model``). ``backend``: ``vllm`` (its async
engine schedules: :mod:`toolkit.serve.vllm_batcher`), ``transformers`` (our continuous batching:
:mod:`toolkit.serve.batcher`) or ``auto`` (vLLM where it runs). Either way concurrent requests
share forward passes and a client that disconnects stops its decoding.

Errors are TGI's JSON bodies ``{"error", "error_type"}``: 422 validation, 413 payload too large,
429 overloaded (``max_concurrent_requests`` queued or running), 424 generation.

Example:
    >>> with TGIServer("tiny-random", adapters={"math": "runs/x/adapter"}) as server:  # doctest: +SKIP
    ...     InferenceClient(server.url).text_generation("2+2=", max_new_tokens=4, adapter_id="math")
"""
from __future__ import annotations

import asyncio
import json
from typing import Callable

import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request as HTTPRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ..background import BackgroundServer, JsonH11Protocol
from ..generation import fall_back
from ..generation.engine import LocalEngine
from ..generation.roles import RoleConfig, RoleError, VLLMOptions
from ..generation.vllm_engine import VLLMError
from .batcher import Batcher, Job, Overloaded
from .body import PayloadTooLarge, parse_body, sse as _sse
from .openai_api import OpenAIRoutes
from .params import GenerationError, Limits, Parsed, ValidationError, parse_generate

VERSION = "2.4.1-qup"
PAYLOAD_LIMIT = 2_000_000     # bytes, TGI's --payload-limit default


def _error(status: int, message: str, error_type: str) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": error_type}, status_code=status)


def _handler(status: int, error_type: str, message=str):
    async def handle(request, e):
        return _error(status, message(e), error_type)
    return handle


EXCEPTION_HANDLERS = {   # exceptions raised by the routes, as TGI's error bodies
    ValidationError: _handler(422, "validation"), PayloadTooLarge: _handler(413, "validation"),
    Overloaded: _handler(429, "overloaded", lambda e: "Model is overloaded"),
    GenerationError: _handler(424, "generation", lambda e: f"Request failed during generation: {e}"),
    ClientDisconnect: _handler(400, "validation", lambda e: "client disconnected"),
    Exception: _handler(500, "internal", lambda e: "Internal server error")}   # bugs: logged too


class _App(OpenAIRoutes):
    """The route handlers, bound to one engine + batcher."""

    def __init__(self, engine, batcher, max_input_tokens: int | None = None,
                 max_total_tokens: int | None = None, payload_limit: int = PAYLOAD_LIMIT):
        self.engine, self.batcher, self.payload_limit = engine, batcher, payload_limit
        tok = engine.tokenizer
        self.special_ids = set(tok.all_special_ids)
        total = max_total_tokens or engine.max_length
        max_input = max_input_tokens or total - 1
        if not 0 < max_input < total <= engine.max_length:
            raise ValueError(f"need 0 < max_input_tokens ({max_input}) < max_total_tokens ({total}) "
                             f"<= the model's {engine.max_length} positions")
        self.limits = Limits(max_input_tokens=max_input, max_total_tokens=total,
                             adapters=tuple(engine.adapters), encode=engine.encode,
                             decode=lambda ids: tok.decode(ids),
                             token_chars=max(map(len, tok.get_vocab())),
                             max_client_batch_size=batcher.max_batch_size)

    # ------------------------------------------------------------------ job lifecycle
    def _submit(self, parsed: Parsed) -> Job:
        m = self.batcher.metrics
        m.request_count += 1
        try:
            return self.batcher.submit(parsed.request, asyncio.get_running_loop(),
                                       want_prefill=parsed.decoder_input_details)
        except Overloaded:
            m.request_failure += 1
            raise

    async def _next(self, job: Job):
        """The job's next event; errors become :class:`GenerationError`."""
        event = await job.events.get()
        if event[0] == "done":
            self.batcher.metrics.request_success += 1
        elif event[0] == "error":
            self.batcher.metrics.request_failure += 1
            raise GenerationError(str(event[1]))
        return event

    async def _results(self, jobs: list[Job], request: HTTPRequest) -> list[tuple[Job, object]]:
        """Wait for the completions; a client that hangs up cancels its jobs."""
        async def watch():
            while (await request.receive())["type"] != "http.disconnect":
                pass

        async def one(job):
            while (event := await self._next(job))[0] != "done":
                pass
            return job, event[1]
        tasks = [asyncio.ensure_future(one(job)) for job in jobs]
        watcher = asyncio.ensure_future(watch())
        try:
            pending = set(tasks)
            while pending:
                done, _ = await asyncio.wait(pending | {watcher}, return_when=asyncio.FIRST_COMPLETED)
                pending -= done
                if watcher in done:
                    raise ClientDisconnect()
                for task in done:
                    task.result()    # a failed job fails the request
            return [task.result() for task in tasks]
        finally:
            for task in (*tasks, watcher):
                task.cancel()
            for job in jobs:
                job.close()

    async def _events(self, job: Job):
        """(token dict, (job, Completion) | None) pairs; closing the stream cancels the job."""
        held = None
        try:
            while True:
                event = await self._next(job)
                if event[0] == "token":
                    if held is not None:
                        yield held, None
                    held = self._token(*event[1:])
                else:
                    yield held or {"id": 0, "text": "", "logprob": None, "special": True}, (job, event[1])
                    return
        finally:
            job.close()

    @staticmethod
    def _sse_response(events, jobs: list[Job]) -> StreamingResponse:
        """Stream ``events``; the jobs are closed at the end even if the stream never started."""
        def close():
            for job in jobs:
                job.close()
        return StreamingResponse(events, media_type="text/event-stream", background=BackgroundTask(close))

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

    # ------------------------------------------------------------------ TGI routes
    async def generate(self, request: HTTPRequest, compat: bool = False, stream: bool = False):
        _, parsed = await parse_body(request, self.payload_limit, parse_generate, self.limits, stream)
        job = self._submit(parsed)
        if parsed.stream:
            return self._sse_response(self._stream_generate(job, parsed), [job])
        [(job, c)] = await self._results([job], request)
        text = parsed.request.prompt + c.text if parsed.return_full_text else c.text
        out = {"generated_text": text}
        if parsed.details:
            out["details"] = self._details(job, parsed, c)
        return JSONResponse([out] if compat else out)

    async def _stream_generate(self, job: Job, parsed: Parsed):
        index = 0
        try:
            async for token, done in self._events(job):
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
        except GenerationError as e:
            yield _sse({"error": f"Request failed during generation: {e}", "error_type": "generation"})

    async def compat(self, request: HTTPRequest):
        return await self.generate(request, compat=True)

    async def generate_stream(self, request: HTTPRequest):
        return await self.generate(request, stream=True)

    def _tokenize(self, body):
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), str):
            raise ValidationError("request body must be a JSON object with `inputs`")
        text = body["inputs"]
        enc = self.engine.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return json.dumps([{"id": i, "text": text[a:b], "start": a, "stop": b}   # rendered here too
                           for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"])]).encode()

    async def tokenize(self, request: HTTPRequest):
        _, out = await parse_body(request, self.payload_limit, self._tokenize)
        return Response(out, media_type="application/json")

    async def info(self, request: HTTPRequest):
        e, b = self.engine, self.batcher
        return JSONResponse({
            "model_id": e.model_id, "model_sha": e.model_revision, "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": b.max_concurrent_requests, "max_best_of": 1,
            "max_stop_sequences": 4, "max_input_tokens": self.limits.max_input_tokens,
            "max_total_tokens": self.limits.max_total_tokens, "validation_workers": 1,
            "max_client_batch_size": b.max_batch_size, "router": "qup-serve", "version": VERSION,
            "sha": None, "docker_label": None, "model_dtype": f"torch.{e.dtype}",
            "adapters": list(e.adapters)})

    async def health(self, request: HTTPRequest):
        if not self.batcher.healthy():
            return _error(503, "unhealthy", "healthcheck")
        return Response(status_code=200)

    async def metrics(self, request: HTTPRequest):
        return PlainTextResponse(self.batcher.metrics.prometheus())

    def routes(self) -> list[Route]:
        return [Route("/", self.compat, methods=["POST"]),
                Route("/generate", self.generate, methods=["POST"]),
                Route("/generate_stream", self.generate_stream, methods=["POST"]),
                Route("/tokenize", self.tokenize, methods=["POST"]),
                Route("/info", self.info), Route("/health", self.health),
                Route("/metrics", self.metrics)] + self.openai_routes()


class TGIServer(BackgroundServer):
    """Serve ``model`` (+ LoRA ``adapters``: name -> dir) over TGI's HTTP API in a background thread.

    ``dtype``: ``auto`` (bf16 where native, else fp32) or a name, as for ``LocalEngine``.
    Limits as TGI's launcher flags: ``max_input_tokens`` (default: positions - 1),
    ``max_total_tokens`` (prompt + new tokens; default: the model's positions),
    ``max_batch_size`` (rows per forward pass), ``max_concurrent_requests`` (queued + running;
    beyond: 429), ``payload_limit`` (body bytes; beyond: 413). ``continuous_batching``: new
    requests join the running batch at its next step (False: they wait for it to end).
    ``wrap_app`` (tests only) wraps the ASGI app, e.g. with a fault-injecting middleware.
    ``model``: a :class:`~toolkit.generation.roles.RoleConfig` (backend auto | vllm | transformers,
    dtype, vLLM options), or a model name with ``backend``, ``dtype`` and ``vllm`` beside it.
    ``max_batch_size`` is vLLM's ``max_num_seqs``; ``continuous_batching`` is the transformers engine's.
    """

    def __init__(self, model: str | RoleConfig, adapters: dict[str, str] | None = None, host: str = "127.0.0.1",
                 port: int = 0, max_batch_size: int = 16, dtype="auto",
                 wrap_app: Callable | None = None, max_input_tokens: int | None = None,
                 max_total_tokens: int | None = None, max_concurrent_requests: int = 128,
                 payload_limit: int = PAYLOAD_LIMIT, continuous_batching: bool = True,
                 backend: str = "auto", vllm: VLLMOptions | None = None):
        role = model if isinstance(model, RoleConfig) else RoleConfig(
            model=model, backend=backend, dtype=dtype, vllm=vllm or VLLMOptions())
        self.engine, self.batcher = _engine(role, adapters, max_batch_size, max_concurrent_requests,
                                            continuous_batching)
        handlers = _App(self.engine, self.batcher, max_input_tokens, max_total_tokens, payload_limit)
        self.app = Starlette(routes=handlers.routes(), exception_handlers=EXCEPTION_HANDLERS)
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


def _engine(role: RoleConfig, adapters, max_batch_size, max_concurrent, continuous):
    """(engine, batcher) of the role; ``auto`` falls back to transformers if vLLM cannot start."""
    chosen = role.resolved()
    if chosen not in ("vllm", "transformers") or not role.enabled:
        raise RoleError(f"serve: the model must run in-process (backend auto | vllm | transformers), "
                        f"got model {role.model!r} on backend {role.backend}")
    if chosen == "vllm":
        from .vllm_batcher import AsyncBatcher, AsyncVLLM
        try:
            engine = AsyncVLLM(role.model, adapters, role.dtype, role.vllm, max_num_seqs=max_batch_size)
            return engine, AsyncBatcher(engine, max_batch_size, max_concurrent)
        except VLLMError as e:
            if role.backend != "auto" or not fall_back(e):
                raise
    engine = LocalEngine(role.model, adapters=adapters, batch_size=max_batch_size, dtype=role.dtype)
    return engine, Batcher(engine, max_batch_size=max_batch_size,
                           max_concurrent_requests=max_concurrent, continuous=continuous)


def serve(model: str | RoleConfig, adapters: dict[str, str] | None = None, host: str = "127.0.0.1",
          port: int = 8080, max_batch_size: int = 16, **limits) -> None:
    """Run the server in the foreground until interrupted (``qup serve``); ``limits`` as for
    :class:`TGIServer` (``max_input_tokens``, ``max_total_tokens``, ``max_concurrent_requests``,
    ``payload_limit``; with a model name also ``dtype``, ``backend``, ``vllm``)."""
    server = TGIServer(model, adapters, host, port, max_batch_size, **limits)
    server.batcher.start()
    try:
        uvicorn.run(server.app, host=host, port=port, log_level="info", http=JsonH11Protocol)
    finally:
        server.batcher.stop()
