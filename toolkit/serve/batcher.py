"""Continuous batching for the server: one thread owns the model and decodes queued jobs together.

A batch starts with the waiting jobs of one adapter (up to ``max_batch_size``) and decodes them
in shared forward passes (:class:`~toolkit.generation.running.RunningBatch`); at every step,
jobs waiting at the head of the queue with that adapter join it (prefilled apart, as TGI does)
and finished ones leave, answered at once. Tokens flow back to each job's asyncio queue as they
are made. At most ``max_concurrent_requests`` jobs are queued or running (``submit`` raises
:class:`Overloaded` beyond: HTTP 429); a job that fails or is cancelled leaves its batch alone.

Example:
    >>> batcher = Batcher(engine, max_batch_size=16).start()               # doctest: +SKIP
    >>> job = batcher.submit(Request(prompt, SamplingParams(seed=1)), loop)  # doctest: +SKIP
    >>> event = await job.events.get()      # ("token", id, text, logprob) ... ("done", Completion)  # doctest: +SKIP
"""
from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from dataclasses import dataclass, field

import torch

from ..generation.base import Completion, Request

log = logging.getLogger(__name__)


class Overloaded(RuntimeError):
    """``max_concurrent_requests`` jobs are already queued or running."""


@dataclass
class Job:
    request: Request
    loop: asyncio.AbstractEventLoop
    want_prefill: bool = False
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    tokens: list[tuple[int, str, float]] = field(default_factory=list)   # every sampled token
    prefill: list[float] | None = None
    cancelled: bool = False
    release: object = None    # gives the concurrency slot back (once)

    def emit(self, *event) -> None:
        if self.cancelled:
            return
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:   # the event loop is closed: nobody listens any more
            self.cancelled = True

    def close(self) -> None:
        """The client is gone or served: stop decoding this job, free its slot."""
        self.cancelled = True
        release, self.release = self.release, None
        if release is not None:
            release()


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

    def __init__(self, engine, max_batch_size: int = 16, gather_s: float = 0.005,
                 max_concurrent_requests: int = 128, continuous: bool = True):
        self.engine, self.max_batch_size, self.gather_s = engine, max_batch_size, gather_s
        self.continuous = continuous   # False: new jobs wait for the running batch to end
        self.max_concurrent_requests = max_concurrent_requests
        self._inflight = 0
        self.metrics = Metrics()
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="qup-batcher", daemon=True)

    def start(self) -> "Batcher":
        self._thread.start()
        return self

    def healthy(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    def submit(self, request: Request, loop: asyncio.AbstractEventLoop,
               want_prefill: bool = False) -> Job:
        job = Job(request, loop, want_prefill, release=self._release)
        with self._cond:
            if self._inflight >= self.max_concurrent_requests:
                raise Overloaded("Model is overloaded")
            self._inflight += 1
            self._queue.append(job)
            self.metrics.queue_size = len(self._queue)
            self._cond.notify()
        return job

    def _release(self) -> None:
        with self._cond:
            self._inflight -= 1

    # ------------------------------------------------------------------ the model thread
    def _take(self, adapter, n: int) -> list[Job]:
        """Up to ``n`` jobs from the head of the queue with ``adapter`` (caller holds the lock).
        Only the head: a newer job never overtakes an older one of another adapter."""
        jobs = []
        while self._queue and len(jobs) < n:
            job = self._queue[0]
            if not job.cancelled:
                if job.request.adapter != adapter:
                    break
                jobs.append(job)
            self._queue.popleft()
        self.metrics.queue_size = len(self._queue)
        return jobs

    def _take_batch(self) -> list[Job]:
        while True:
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
                while self._queue and self._queue[0].cancelled:   # gone before it started
                    self._queue.popleft()
                self.metrics.queue_size = len(self._queue)
                if self._queue:
                    return self._take(self._queue[0].request.adapter, self.max_batch_size)

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                return
            jobs: dict[int, Job] = {}
            try:
                with torch.inference_mode():
                    self._decode(batch, jobs)
            except Exception as e:  # a failed forward pass fails its requests, never the server
                log.exception("batch of %d failed", len(jobs))
                for job in jobs.values():
                    job.emit("error", e)
            finally:
                self.metrics.batch_current_size = 0

    def _decode(self, batch: list[Job], jobs: dict[int, Job]) -> None:
        """Decode ``batch``; waiting jobs of its adapter join it at each step (continuous batching)."""
        adapter, m = batch[0].request.adapter, self.metrics

        def on_token(i: int, tok: int, text: str, logprob: float) -> None:
            jobs[i].tokens.append((tok, text, logprob))
            jobs[i].emit("token", tok, text, logprob)

        def on_finish(i: int, c: Completion) -> None:
            job = jobs.pop(i)
            m.generated_tokens += len(job.tokens)
            m.input_tokens += c.prompt_tokens
            if c.finish_reason not in ("error", "cancelled"):
                job.emit("done", c)

        running = self.engine.start_batch(
            adapter, on_token=on_token, on_finish=on_finish, cancelled=lambda i: jobs[i].cancelled,
            on_error=lambda i, e: self._fail(jobs[i], e))
        self._join(running, batch, jobs)
        while running.active and not self._stop:
            running.step()
            m.batch_current_size = len(running.active)
            room = self.max_batch_size - len(running.active)
            if not (self.continuous and room > 0 and self._queue and running.can_join):
                continue
            with self._cond:
                batch = self._take(adapter, room)
            if batch:
                self._join(running, batch, jobs)

    def _join(self, running, batch: list[Job], jobs: dict[int, Job]) -> None:
        want = [job for job in batch if job.want_prefill]
        if want:
            self._prefill(want, batch[0].request.adapter)
        # the rows' indexes are known only once added: map them before any callback can fire
        first = running.next_index
        for k, job in enumerate(batch):
            jobs[first + k] = job
        running.add([job.request for job in batch])
        m = self.metrics
        m.batch_count += 1
        m.batch_size_sum += len(batch)
        m.batch_current_size = len(running.active)
        m.batch_max_size = max(m.batch_max_size, m.batch_current_size, len(batch))

    def _prefill(self, jobs: list[Job], adapter) -> None:
        """decoder_input_details: every prompt token's logprob but the first (per job on failure)."""
        try:
            ids = [self.engine.encode(job.request.prompt) for job in jobs]
            for job, lps in zip(jobs, self.engine.score_ids(ids, [1] * len(ids), adapter)):
                job.prefill = lps
        except Exception as e:
            if len(jobs) == 1:
                return self._fail(jobs[0], e)
            for job in jobs:
                self._prefill([job], adapter)

    @staticmethod
    def _fail(job: Job, e: Exception) -> None:
        if not job.cancelled:
            log.error("request failed: %s: %s", type(e).__name__, e)
            job.emit("error", e)
            job.cancelled = True     # it leaves the batch at the next step
