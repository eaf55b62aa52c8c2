"""The OpenAI-compatible routes of the server, as TGI serves them.

``POST /v1/chat/completions`` and ``/v1/completions`` (both with ``stream``), ``GET /v1/models``.
``model`` names a loaded LoRA adapter, or anything else (e.g. ``"tgi"``) for the base model;
``temperature: 0`` is greedy. ``/v1/completions`` takes a prompt or a list of prompts (up to
``max_batch_size``), one choice each.

Example:
    >>> oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key="-")       # doctest: +SKIP
    >>> oai.completions.create(model="tgi", prompt="2+2=", max_tokens=4).choices[0].text  # doctest: +SKIP
"""
from __future__ import annotations

import asyncio
import time
import uuid

from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse
from starlette.routing import Route

from .batcher import Job
from .body import parse_body, sse
from .params import GenerationError, Parsed, parse_chat, parse_completion

FINISH_OPENAI = {"eos_token": "stop", "stop": "stop", "length": "length"}
DONE = b"data: [DONE]\n\n"


def _usage(pairs) -> dict:
    prompt = sum(c.prompt_tokens for _, c in pairs)
    completion = sum(len(job.tokens) for job, _ in pairs)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _failed(e: GenerationError) -> bytes:
    return sse({"error": f"Request failed during generation: {e}", "error_type": "generation"})


class OpenAIRoutes:
    """Mixin of the server's ``_App``: needs ``engine``, ``limits``, ``payload_limit``,
    ``_submit``, ``_results``, ``_events`` and ``_sse_response``."""

    def _head(self, body: dict, prefix: str) -> dict:
        from .server import VERSION
        return {"id": f"{prefix}-{uuid.uuid4().hex[:12]}", "created": int(time.time()),
                "model": body.get("model") or self.engine.model_id, "system_fingerprint": VERSION}

    def _submit_all(self, parsed: list[Parsed]) -> list[Job]:
        jobs: list[Job] = []
        try:
            for p in parsed:
                jobs.append(self._submit(p))
        except Exception:   # overloaded part-way: give back what was taken
            for job in jobs:
                job.close()
            raise
        return jobs

    # ------------------------------------------------------------------ chat
    async def chat(self, request: HTTPRequest):
        body, parsed = await parse_body(request, self.payload_limit, parse_chat, self.limits,
                                        self.engine.render_chat)
        head = self._head(body, "chatcmpl")
        job = self._submit(parsed)
        if parsed.stream:
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return self._sse_response(self._stream_chat(job, head, usage), [job])
        [(job, c)] = await self._results([job], request)
        return JSONResponse({**head, "object": "chat.completion", "choices": [{
            "index": 0, "message": {"role": "assistant", "content": c.text}, "logprobs": None,
            "finish_reason": FINISH_OPENAI[c.finish_reason]}], "usage": _usage([(job, c)])})

    async def _stream_chat(self, job: Job, head: dict, usage: bool):
        chunk = {**head, "object": "chat.completion.chunk"}
        try:
            async for token, done in self._events(job):
                text = "" if token["special"] else token["text"]
                choice = {"index": 0, "delta": {"role": "assistant", "content": text},
                          "logprobs": None, "finish_reason": None}
                if done is not None:
                    choice["finish_reason"] = FINISH_OPENAI[done[1].finish_reason]
                yield sse({**chunk, "choices": [choice], "usage": None})
            if usage:
                yield sse({**chunk, "choices": [], "usage": _usage([done])})
        except GenerationError as e:
            yield _failed(e)
        yield DONE

    # ------------------------------------------------------------------ completions
    async def completions(self, request: HTTPRequest):
        body, parsed = await parse_body(request, self.payload_limit, parse_completion, self.limits)
        head = {**self._head(body, "cmpl"), "object": "text_completion"}
        jobs = self._submit_all(parsed)
        if parsed[0].stream:
            return self._sse_response(self._stream_completions(jobs, head), jobs)
        pairs = await self._results(jobs, request)
        return JSONResponse({**head, "choices": [
            {"index": i, "text": c.text, "logprobs": None, "finish_reason": FINISH_OPENAI[c.finish_reason]}
            for i, (_, c) in enumerate(pairs)], "usage": _usage(pairs)})

    async def _stream_completions(self, jobs: list[Job], head: dict):
        """One chunk per token, prompts interleaved (``index``); the last chunk of each carries
        its ``finish_reason`` and ``usage``."""
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(i: int, job: Job):
            try:
                async for token, done in self._events(job):
                    await queue.put((i, token, done))
                await queue.put((i, None, None))
            except GenerationError as e:
                await queue.put((i, e, None))
        tasks = [asyncio.create_task(pump(i, job)) for i, job in enumerate(jobs)]
        try:
            left = len(jobs)
            while left:
                i, token, done = await queue.get()
                if token is None:
                    left -= 1
                elif isinstance(token, GenerationError):
                    left -= 1
                    yield _failed(token)
                else:
                    choice = {"index": i, "text": "" if token["special"] else token["text"],
                              "logprobs": None, "finish_reason": None}
                    out = {**head, "choices": [choice]}
                    if done is not None:
                        choice["finish_reason"] = FINISH_OPENAI[done[1].finish_reason]
                        out["usage"] = _usage([done])
                    yield sse(out)
            yield DONE
        finally:
            for task in tasks:
                task.cancel()
            for job in jobs:
                job.close()

    # ------------------------------------------------------------------ models
    async def models(self, request: HTTPRequest):
        """The base model (as TGI lists it), then each LoRA adapter (selectable by ``model``)."""
        e = self.engine
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": e.model_id}
            for name in [e.model_id, *e.adapters]]})

    def openai_routes(self) -> list[Route]:
        return [Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/models", self.models)]
