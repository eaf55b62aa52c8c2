"""``qup serve`` on vLLM: the server's batcher interface over vLLM's ``AsyncLLM``.

vLLM schedules (continuous batching, paged KV cache, multi-LoRA, prefix caching): this module
only turns a request into ``AsyncLLM.generate`` and its outputs into the job events the routes
read (``("token", id, text, logprob)`` ... ``("done", Completion)`` or ``("error", e)``). The
engine lives in one daemon thread with its own event loop, shared by every server of the process
with the same model and options (start-up is 40-110 s on CPU); closing a job cancels its
``generate``, which aborts the request inside vLLM (a client that hangs up stops its decoding).
At most ``max_concurrent_requests`` jobs are queued or running: beyond, :class:`Overloaded` (429).

Example:
    >>> engine = AsyncVLLM("tiny-random", dtype="float32")                  # doctest: +SKIP
    >>> batcher = AsyncBatcher(engine, max_concurrent_requests=64)          # doctest: +SKIP
    >>> job = batcher.submit(Request(prompt, SamplingParams(seed=1)), loop)  # doctest: +SKIP
"""
from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import uuid
from dataclasses import asdict

from ..generation.base import Request
from ..generation.roles import VLLMOptions
from ..generation.vllm_engine import Adapters, completion, engine_kwargs, sampling_params, start, version
from ..models import dtype_name, model_info, resolve_dtype
from .batcher import Job, Metrics, Overloaded

log = logging.getLogger(__name__)
_ENGINES: dict[tuple, tuple] = {}     # (path, dtype, lora, options, max_num_seqs) -> (AsyncLLM, loop)


def _loop() -> asyncio.AbstractEventLoop:
    """A fresh event loop running forever in a daemon thread (the engine's home)."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="qup-vllm", daemon=True).start()
    return loop


def _async_llm(path: str, dtype: str, opts: VLLMOptions, lora: bool, max_num_seqs: int):
    key = (path, dtype, lora, tuple(sorted(asdict(opts).items())), max_num_seqs)
    if key not in _ENGINES:
        def make():
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
            log.info("vllm: starting the async engine for %s (%s), 40-110 s on CPU", path, dtype)
            args = AsyncEngineArgs(**engine_kwargs(path, dtype, opts, lora), max_num_seqs=max_num_seqs)
            loop = _loop()

            async def build():     # made on its loop: its output task lives there
                return AsyncLLM.from_engine_args(args)
            return asyncio.run_coroutine_threadsafe(build(), loop).result(), loop
        if not _ENGINES:
            atexit.register(_shutdown)
        _ENGINES[key] = start(make, path, opts)
    return _ENGINES[key]


def _shutdown() -> None:
    """Stop the engines on their loops before the interpreter tears the loops down."""
    async def close(llm):
        llm.shutdown()
    for llm, loop in _ENGINES.values():
        try:
            asyncio.run_coroutine_threadsafe(close(llm), loop).result(timeout=30)
        except Exception as e:    # exiting anyway: say it, do not raise
            log.warning("vllm: engine shutdown: %s", e)
    _ENGINES.clear()


class AsyncVLLM:
    """What the routes need of an engine (tokenizer, limits, adapters), served by ``AsyncLLM``."""
    engine = "vllm"

    def __init__(self, model: str, adapters: dict[str, str] | None = None, dtype="auto",
                 options: VLLMOptions | None = None, max_num_seqs: int = 16):
        from transformers import AutoTokenizer
        info = model_info(model)
        self.model_id, self.model_revision = info.hub_id, info.revision
        self.dtype = dtype_name(resolve_dtype(dtype))
        self.options = options or VLLMOptions()
        self.loras = Adapters(adapters, self.options)
        self.adapters = self.loras.paths
        self.llm, self.loop = _async_llm(info.path, self.dtype, self.options, bool(self.adapters),
                                         max_num_seqs)
        self.tokenizer = AutoTokenizer.from_pretrained(info.path)
        self.max_length = self.llm.model_config.max_model_len
        self.label = f"vllm {version() or ''}"

    def render_chat(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


class AsyncBatcher:
    """The :class:`~toolkit.serve.batcher.Batcher` interface over :class:`AsyncVLLM`."""

    def __init__(self, engine: AsyncVLLM, max_batch_size: int = 16, max_concurrent_requests: int = 128):
        self.engine, self.max_batch_size = engine, max_batch_size
        self.max_concurrent_requests = max_concurrent_requests
        self._metrics = Metrics()
        self._inflight = 0
        self._lock = threading.Lock()
        self._futures: set = set()
        self._prefill = asyncio.Lock()   # see _run (created unbound: it binds to the engine's loop)

    @property
    def metrics(self) -> Metrics:
        """TGI's counters; ``batch_current_size`` is what vLLM holds (running + waiting)."""
        m = self._metrics
        m.batch_current_size = self.engine.llm.get_num_unfinished_requests()
        m.batch_max_size = max(m.batch_max_size, m.batch_current_size)
        return m

    def start(self) -> "AsyncBatcher":
        return self

    def stop(self) -> None:
        for fut in list(self._futures):
            fut.cancel()

    def healthy(self) -> bool:
        return not self.engine.llm.errored

    def submit(self, request: Request, loop: asyncio.AbstractEventLoop, want_prefill: bool = False) -> Job:
        with self._lock:
            if self._inflight >= self.max_concurrent_requests:
                raise Overloaded("Model is overloaded")
            self._inflight += 1
            self._metrics.queue_size += 1
        job = Job(request, loop, want_prefill)
        fut = asyncio.run_coroutine_threadsafe(self._run(job), self.engine.loop)
        self._futures.add(fut)
        fut.add_done_callback(self._futures.discard)

        def release():            # the client is gone or served: abort in vLLM, free the slot
            fut.cancel()
            with self._lock:
                self._inflight -= 1
        job.release = release
        return job

    async def _run(self, job: Job) -> None:
        e, r, started = self.engine, job.request, False
        try:
            from vllm.inputs import TokensPrompt
            ids = e.encode(r.prompt)
            extra = {"prompt_logprobs": 0} if job.want_prefill else {}
            params = sampling_params(r.params, e.max_length - len(ids), **extra)
            # vLLM 0.32's CPU LoRA kernel breaks prompt logprobs of several requests in one step:
            # on a LoRA engine such requests are prefilled one at a time
            serial = job.want_prefill and bool(e.adapters)
            if serial:
                await self._prefill.acquire()
            try:
                async for out in e.llm.generate(TokensPrompt(prompt_token_ids=ids), params, uuid.uuid4().hex,
                                                lora_request=e.loras.request(r.adapter)):
                    if not started:
                        started = self._started(job, out, ids)
                        if serial:                  # prefilled: the next one may go
                            self._prefill.release()
                            serial = False
                    self._emit(job, out, len(ids))
            finally:
                if serial:
                    self._prefill.release()
        except asyncio.CancelledError:
            raise
        except Exception as err:   # a failed request fails alone, never the server
            log.error("request failed: %s: %s", type(err).__name__, err)
            job.emit("error", err)
        finally:
            if not started:
                with self._lock:
                    self._metrics.queue_size -= 1

    def _started(self, job: Job, out, ids: list[int]) -> bool:
        with self._lock:
            self._metrics.queue_size -= 1
        self.metrics      # notes the batch size
        if job.want_prefill and out.prompt_logprobs:
            job.prefill = [d[t].logprob for d, t in zip(out.prompt_logprobs[1:], ids[1:])]
        return True

    def _emit(self, job: Job, out, n_prompt: int) -> None:
        """The output's new tokens as events (every sampled token, EOS included), then done."""
        c, m, tok = out.outputs[0], self._metrics, self.engine.tokenizer
        seen = len(job.tokens)
        for t, d in zip(c.token_ids[seen:], (c.logprobs or [])[seen:]):
            job.tokens.append((t, tok.decode([t]), d[t].logprob))
            m.generated_tokens += 1
            job.emit("token", *job.tokens[-1])
        if out.finished:
            m.input_tokens += n_prompt
            job.emit("done", completion(out))
