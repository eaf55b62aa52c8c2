"""Dynamic batching for the server: one thread owns the model and decodes queued jobs together.

Requests arriving while a batch runs wait in the queue; the next batch takes every waiting job
with the same adapter (up to ``max_batch_size``) and decodes them in shared forward passes via
:meth:`LocalEngine.generate_batch`. Tokens flow back to each job's asyncio queue as they are made.

Example:
    >>> batcher = Batcher(engine, max_batch_size=16).start()               # doctest: +SKIP
    >>> job = batcher.submit(Request(prompt, SamplingParams(seed=1)), loop)
    >>> event = await job.events.get()      # ("token", id, text, logprob) ... ("done", Completion)
"""
from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from dataclasses import dataclass, field

from ..generation.base import Completion, Request

log = logging.getLogger(__name__)


@dataclass
class Job:
    request: Request
    loop: asyncio.AbstractEventLoop
    want_prefill: bool = False
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    tokens: list[tuple[int, str, float]] = field(default_factory=list)   # every sampled token
    prefill: list[float] | None = None

    def emit(self, *event) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


@dataclass
class Metrics:
    """Counters exposed at ``/metrics`` (Prometheus text, TGI's metric names)."""
    request_count: int = 0
    request_success: int = 0
    request_failure: int = 0
    generated_tokens: int = 0
    input_tokens: int = 0
    batch_count: int = 0
    batch_size_sum: int = 0
    batch_current_size: int = 0
    batch_max_size: int = 0
    queue_size: int = 0

    def prometheus(self) -> str:
        rows = [("tgi_request_count", "counter", self.request_count),
                ("tgi_request_success", "counter", self.request_success),
                ("tgi_request_failure", "counter", self.request_failure),
                ("tgi_request_generated_tokens_sum", "counter", self.generated_tokens),
                ("tgi_request_input_length_sum", "counter", self.input_tokens),
                ("tgi_batch_inference_count", "counter", self.batch_count),
                ("tgi_batch_next_size_sum", "counter", self.batch_size_sum),
                ("tgi_batch_current_size", "gauge", self.batch_current_size),
                ("tgi_batch_max_size", "gauge", self.batch_max_size),
                ("tgi_queue_size", "gauge", self.queue_size)]
        return "".join(f"# TYPE {n} {t}\n{n} {v}\n" for n, t, v in rows)


class Batcher:
    """Owns the engine in one background thread; ``submit`` is safe from any thread."""

    def __init__(self, engine, max_batch_size: int = 16, gather_s: float = 0.005):
        self.engine, self.max_batch_size, self.gather_s = engine, max_batch_size, gather_s
        self.metrics = Metrics()
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="qup-batcher", daemon=True)

    def start(self) -> "Batcher":
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    def submit(self, request: Request, loop: asyncio.AbstractEventLoop,
               want_prefill: bool = False) -> Job:
        job = Job(request, loop, want_prefill)
        with self._cond:
            self._queue.append(job)
            self.metrics.queue_size = len(self._queue)
            self._cond.notify()
        return job

    # ------------------------------------------------------------------ the model thread
    def _take_batch(self) -> list[Job]:
        with self._cond:
            while not self._queue and not self._stop:
                self._cond.wait(timeout=0.5)
            if self._stop:
                return []
        # let requests sent together arrive together: wait while the queue still grows (<= 50 ms)
        seen, deadline = 0, time.monotonic() + 10 * self.gather_s
        while time.monotonic() < deadline:
            with self._cond:
                now = len(self._queue)
            if now == seen or now >= self.max_batch_size:
                break
            seen = now
            time.sleep(self.gather_s)
        with self._cond:
            adapter = self._queue[0].request.adapter
            batch, rest = [], collections.deque()
            while self._queue:
                job = self._queue.popleft()
                if job.request.adapter == adapter and len(batch) < self.max_batch_size:
                    batch.append(job)
                else:
                    rest.append(job)
            self._queue.extend(rest)
            self.metrics.queue_size = len(self._queue)
        return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                return
            m = self.metrics
            m.batch_count += 1
            m.batch_size_sum += len(batch)
            m.batch_current_size = len(batch)
            m.batch_max_size = max(m.batch_max_size, len(batch))
            try:
                self._decode(batch)
            except Exception as e:  # a failed batch fails its requests, never the server
                log.exception("batch of %d failed", len(batch))
                for job in batch:
                    job.emit("error", e)
            finally:
                m.batch_current_size = 0

    def _decode(self, batch: list[Job]) -> None:
        adapter = batch[0].request.adapter
        want = [job for job in batch if job.want_prefill]
        if want:  # decoder_input_details: every prompt token's logprob but the first
            ids = [self.engine.encode(job.request.prompt) for job in want]
            for job, lps in zip(want, self.engine.score_ids(ids, [1] * len(ids), adapter)):
                job.prefill = lps

        def on_token(i: int, tok: int, text: str, logprob: float) -> None:
            batch[i].tokens.append((tok, text, logprob))
            batch[i].emit("token", tok, text, logprob)

        completions: list[Completion] = self.engine.generate_batch([j.request for j in batch],
                                                                   on_token=on_token)
        for job, c in zip(batch, completions):
            self.metrics.generated_tokens += len(job.tokens)
            self.metrics.input_tokens += c.prompt_tokens
            job.emit("done", c)
