"""The endpoint backend: a :class:`Generator` over TGI (or OpenAI-compatible) HTTP endpoints.

Built on ``huggingface_hub.AsyncInferenceClient``: TGI ``text_generation`` (``details=True``,
``seed``; the prompt is rendered here with the model's chat template) or ``chat_completion``
(``api="openai"``). Requests run with bounded concurrency over several replicas (health-checked
with ``GET /health``), are retried with exponential backoff + jitter (honouring ``Retry-After``)
on 429/5xx, timeouts and connection errors, and are cached on disk as they complete, so a resumed
run never re-sends a finished request. Rows match the local backend's (TGI's EOS token is not
counted; a stop-sequence finish is cut after the stop string, like the local engine does).

Example:
    >>> gen = EndpointGenerator("tiny-random", ["http://127.0.0.1:8080"], cache_dir="runs/x/cache")  # doctest: +SKIP
    >>> prompt = gen.render_chat([{"role": "user", "content": "What is 2+3?"}])  # doctest: +SKIP
    >>> [c] = gen.generate([Request(prompt, SamplingParams(max_new_tokens=32, seed=1))])  # doctest: +SKIP
    >>> [c] = await gen.agenerate([...])       # from async code (e.g. a Gradio handler)  # doctest: +SKIP
    >>> [lps] = gen.score([prompt], [c.text])  # TGI decoder_input_details of prompt + completion  # doctest: +SKIP
"""
from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from dataclasses import asdict, dataclass
from typing import Sequence

import aiohttp
from huggingface_hub import AsyncInferenceClient
from tqdm.auto import tqdm

from ..errors import QupError
from .base import Completion, Request, SamplingParams, split_for_scoring
from .cache import RequestCache

FINISH = {"eos_token": "eos_token", "stop_sequence": "stop", "stop": "stop", "length": "length"}


class EndpointError(QupError, ValueError):
    """An endpoint request failed for good (retries exhausted, or rejected as invalid)."""


@dataclass
class _Replica:
    url: str
    healthy: bool = True
    next_check: float = 0.0
    inflight: int = 0
    uses: int = 0


def _http_status(e: BaseException) -> tuple[int | None, float | None]:
    """(HTTP status, Retry-After seconds) of a client error, looking through its causes."""
    seen = 0
    while e is not None and seen < 4:
        resp = getattr(e, "response", None)
        status = getattr(resp, "status_code", None)
        if status:
            after = resp.headers.get("retry-after")
            try:
                return status, float(after) if after is not None else None
            except ValueError:
                return status, None
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None, None


def _is_transport(e: BaseException) -> bool:
    import httpx2
    from huggingface_hub.errors import InferenceTimeoutError
    return isinstance(e, (httpx2.TransportError, InferenceTimeoutError, asyncio.TimeoutError,
                          aiohttp.ClientError, ConnectionError))


def _run(coro):
    """Run ``coro`` to completion, also from inside a running event loop (then in a thread);
    its exception, if any, is raised here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box = {}

    def target():
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e
    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


class EndpointGenerator:
    """Completions from endpoint ``endpoints`` (replica URLs) serving ``model``.

    ``tokenizer`` (default: ``model``) renders chat prompts and counts prompt tokens; ``token``
    is sent as the bearer token and never logged; ``adapter`` is the default ``adapter_id``.
    Sampled requests without a seed are not cached (they are not reproducible).
    Async code awaits :meth:`agenerate` / :meth:`ascore`; the sync methods wrap them.
    """
    dtype = ""   # the server's, unknown here
    engine = "endpoint"

    @property
    def label(self) -> str:
        return f"{self.api} endpoint"

    def __init__(self, model: str, endpoints: Sequence[str], api: str = "tgi",
                 tokenizer: str | None = None, concurrency: int = 16, cache_dir: str | None = None,
                 token: str | None = None, timeout: float = 120.0, max_retries: int = 8,
                 backoff: float = 0.5, max_backoff: float = 30.0, health_interval: float = 5.0,
                 adapter: str | None = None):
        from ..models import ModelError, load_tokenizer, model_info
        if api not in ("tgi", "openai"):
            raise EndpointError(f"api must be 'tgi' or 'openai', got {api!r}")
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        if not endpoints:
            raise EndpointError("backend=endpoint needs at least one endpoint URL (endpoints=[...])")
        bad = [u for u in endpoints if not u.startswith(("http://", "https://"))]
        if bad:
            raise EndpointError(f"endpoint URLs must start with http:// or https://: {bad}")
        if concurrency < 1:
            raise EndpointError(f"concurrency must be >= 1, got {concurrency}")
        self.api, self.concurrency, self.adapter = api, concurrency, adapter
        self.token, self.timeout, self.max_retries = token, timeout, max_retries
        self.backoff, self.max_backoff, self.health_interval = backoff, max_backoff, health_interval
        self.replicas = [_Replica(u.rstrip("/")) for u in endpoints]
        try:
            info = model_info(model)
            self.model_id, self.model_revision = info.hub_id, info.revision
        except ModelError:
            self.model_id, self.model_revision = model, "main"
        try:
            self.tokenizer = load_tokenizer(tokenizer or model)
        except Exception as e:  # noqa: BLE001 - any load failure means "no local template"
            if api == "tgi":
                raise EndpointError(f"api='tgi' renders prompts locally but the tokenizer of "
                                    f"{tokenizer or model!r} cannot be loaded: {e}") from None
            self.tokenizer = None
        self.cache = RequestCache(cache_dir) if cache_dir else None
        self._messages: dict[str, list[dict]] = {}   # rendered prompt -> messages (api=openai)
        self._served: dict[str, str | None] = {}     # replica URL -> its base model's name (openai)

    # ------------------------------------------------------------------ Generator protocol
    def render_chat(self, messages: list[dict]) -> str:
        if self.tokenizer is None:
            prompt = json.dumps(messages, ensure_ascii=False)
        else:
            prompt = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                        add_generation_prompt=True)
        if self.api == "openai":
            self._messages[prompt] = [dict(m) for m in messages]
        return prompt

    def generate(self, requests: Sequence[Request], progress: bool = True) -> list[Completion]:
        """One completion per request, in order; cached ones are not sent again."""
        return _run(self.agenerate(requests, progress))

    async def agenerate(self, requests: Sequence[Request], progress: bool = True) -> list[Completion]:
        """:meth:`generate` for async code."""
        for r in requests:
            if self.api == "openai" and r.params.top_k:
                raise EndpointError("top_k is not part of the OpenAI chat API; use api='tgi'")
        return await self._generate_all(list(requests), progress)

    def score(self, prompts: Sequence[str], completions: Sequence[str], adapter: str | None = None,
              progress: bool = False) -> list[list[float]]:
        """Log-probability of each completion token given the prompt, as ``LocalEngine.score``."""
        return _run(self.ascore(prompts, completions, adapter, progress))

    async def ascore(self, prompts: Sequence[str], completions: Sequence[str],
                     adapter: str | None = None, progress: bool = False) -> list[list[float]]:
        """:meth:`score` for async code: the prompt logprobs of prompt + completion (TGI's
        ``decoder_input_details``; on ``api='openai'``, vLLM's ``prompt_logprobs`` extension)."""
        pairs = split_for_scoring(self.encode, prompts, completions)
        todo = [i for i, (ids, n) in enumerate(pairs) if len(ids) > n]
        greedy = SamplingParams(max_new_tokens=1, do_sample=False)
        reqs = [Request(prompts[i] + completions[i], greedy, adapter) for i in todo]
        prefills = await self._generate_all(reqs, progress, scoring=True)
        out: list[list[float]] = [[] for _ in pairs]
        for i, pre in zip(todo, prefills):
            ids, n = pairs[i]
            k = len(ids) - n    # the server may prepend a BOS: take the last k prefill tokens
            if pre["ids"][-k:] != ids[n:]:
                raise EndpointError(f"row {i}: the endpoint tokenises the completion differently "
                                    f"from tokenizer {self.model_id!r}; pass tokenizer=...")
            out[i] = pre["logprobs"][-k:]
        return out

    # ------------------------------------------------------------------ the run
    def _key(self, r: Request, scoring: bool) -> str | None:
        if self.cache is None or (not scoring and not r.params.greedy and r.params.seed is None):
            return None
        params = "prefill" if scoring else r.params.to_json()
        return self.cache.key(self.model_id, r.prompt, params, r.params.seed, r.adapter or self.adapter)

    async def _generate_all(self, requests: list[Request], progress: bool, scoring: bool = False):
        out: list = [None] * len(requests)
        todo = []
        for i, r in enumerate(requests):
            key = self._key(r, scoring)
            hit = self.cache.get(key) if key else None
            if hit is not None:
                out[i] = hit if scoring else Completion(**hit)
            else:
                todo.append((i, key))
        bar = tqdm(total=len(requests), initial=len(requests) - len(todo), unit="seq",
                   desc=f"{'score' if scoring else 'generate'} (endpoint)", disable=not progress)
        start, tokens = time.perf_counter(), 0
        sem = asyncio.Semaphore(self.concurrency)
        clients = {r.url: AsyncInferenceClient(model=r.url, token=self.token, timeout=self.timeout)
                   for r in self.replicas}
        import httpx2      # scoring over the OpenAI API: one pooled client for the whole batch
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http, \
                httpx2.AsyncClient(timeout=self.timeout,
                                  limits=httpx2.Limits(max_connections=self.concurrency)) as raw:
            await asyncio.gather(*(self._check(http, r) for r in self.replicas))

            async def one(i: int, key: str | None):
                nonlocal tokens
                async with sem:
                    result = await self._with_retries(http, clients, requests[i], scoring, raw)
                if key:
                    self.cache.put(key, result if scoring else asdict(result))
                out[i] = result
                tokens += len(result["ids"]) if scoring else result.completion_tokens
                bar.update(1)
                bar.set_postfix(tok_s=f"{tokens / (time.perf_counter() - start):.1f}")
            try:
                async with asyncio.TaskGroup() as tg:
                    for i, key in todo:
                        tg.create_task(one(i, key))
            except* EndpointError as eg:
                raise eg.exceptions[0] from None
            finally:
                bar.close()
                for c in clients.values():
                    await c.close()
        return out

    async def _check(self, http: aiohttp.ClientSession, r: _Replica) -> None:
        try:
            async with http.get(f"{r.url}/health") as resp:
                r.healthy = resp.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            r.healthy = False
        if not r.healthy:
            r.next_check = time.monotonic() + self.health_interval
        elif self.api == "openai" and r.url not in self._served:
            self._served[r.url] = await self._base_model(http, r.url)

    @staticmethod
    async def _base_model(http: aiohttp.ClientSession, url: str) -> str | None:
        """The first model an OpenAI-compatible server lists (vLLM serves the base model under
        its path or ``--served-model-name`` and refuses other names); None if it lists none."""
        try:
            async with http.get(f"{url}/v1/models") as resp:
                data = (await resp.json()).get("data") or [] if resp.status == 200 else []
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError, AttributeError):
            return None
        first = data[0] if data and isinstance(data[0], dict) else {}
        return first.get("id") if isinstance(first.get("id"), str) else None

    async def _pick(self, http) -> _Replica | None:
        now = time.monotonic()
        await asyncio.gather(*(self._check(http, r) for r in self.replicas
                               if not r.healthy and now >= r.next_check))
        healthy = [r for r in self.replicas if r.healthy]
        return min(healthy, key=lambda r: (r.inflight, r.uses)) if healthy else None

    async def _with_retries(self, http, clients, req: Request, scoring: bool, raw=None):
        last = "no healthy replica"
        for attempt in range(self.max_retries + 1):
            replica, wait = await self._pick(http), None
            if replica is not None:
                replica.inflight += 1
                replica.uses += 1
                try:
                    client = clients[replica.url]
                    if scoring:
                        return await (self._score(client, req) if self.api == "tgi"
                                      else self._score_openai(client, req, raw))
                    return await (self._tgi(client, req) if self.api == "tgi" else self._chat(client, req))
                except Exception as e:  # noqa: BLE001 - classified below
                    status, wait = _http_status(e)
                    retriable = status in (408, 429) or (status or 0) >= 500 or (
                        status is None and _is_transport(e))
                    detail = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
                    if not retriable:
                        raise EndpointError(f"endpoint {replica.url} rejected the request "
                                            f"(HTTP {status}): {detail}") from None
                    last = f"{replica.url}: {f'HTTP {status}' if status else type(e).__name__} {detail}"
                    if status is None or status == 503:
                        await self._check(http, replica)
                finally:
                    replica.inflight -= 1
            if attempt < self.max_retries:
                delay = min(self.max_backoff, self.backoff * 2 ** attempt) * random.uniform(0.5, 1.5)
                await asyncio.sleep(wait if wait is not None else delay)
        urls = ", ".join(r.url for r in self.replicas)
        raise EndpointError(f"endpoint request failed after {self.max_retries + 1} attempts "
                            f"({urls}); last error: {last}")

    # ------------------------------------------------------------------ one request
    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _prompt_tokens(self, prompt: str) -> int:
        return len(self.encode(prompt))

    @staticmethod
    def _cut(text: str, stop: list[str]) -> str:
        hits = [text.find(s) + len(s) for s in stop if s in text]
        return text[:min(hits)] if hits else text

    async def _tgi(self, client: AsyncInferenceClient, req: Request) -> Completion:
        p = req.params
        kw = dict(max_new_tokens=p.max_new_tokens, details=True, stop=p.stop or None, seed=p.seed,
                  adapter_id=req.adapter or self.adapter, do_sample=not p.greedy)
        if not p.greedy:  # TGI rejects top_p >= 1 and top_k = 0: send only active warpers
            kw.update(temperature=p.temperature, top_p=p.top_p if p.top_p < 1 else None,
                      top_k=p.top_k or None)
        out = await client.text_generation(req.prompt, **kw)
        d = out.details
        finish = FINISH.get(d.finish_reason, "length")
        tokens = list(d.tokens)
        if finish == "eos_token" and tokens:
            tokens = tokens[:-1]   # the local engine does not count the EOS token either
        text = self._cut(out.generated_text, p.stop) if finish == "stop" else out.generated_text
        return Completion(text=text, prompt_tokens=self._prompt_tokens(req.prompt),
                          completion_tokens=len(tokens), finish_reason=finish,
                          token_ids=[t.id for t in tokens], token_logprobs=[t.logprob for t in tokens])

    async def _score(self, client: AsyncInferenceClient, req: Request) -> dict:
        """The prompt's tokens and their logprobs (the first token has none: ``None``)."""
        out = await client.text_generation(req.prompt, max_new_tokens=1, details=True,
                                           decoder_input_details=True,
                                           adapter_id=req.adapter or self.adapter)
        pre = out.details.prefill
        return {"ids": [t.id for t in pre], "logprobs": [None] + [t.logprob for t in pre[1:]]}

    async def _score_openai(self, client: AsyncInferenceClient, req: Request, http) -> dict:
        """:meth:`_score` over ``/v1/completions`` with vLLM's ``prompt_logprobs`` (our token ids
        as the prompt, so the server tokenises nothing); ``http``: the batch's pooled httpx client."""
        ids = self.encode(req.prompt)
        body = {"model": req.adapter or self.adapter or self._served.get(client.model), "prompt": ids,
                "max_tokens": 1, "temperature": 0, "prompt_logprobs": 0}
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        resp = await http.post(f"{client.model}/v1/completions", json=body, headers=headers)
        if resp.status_code not in (400, 404, 422):
            resp.raise_for_status()           # 429, 5xx: retried
        lps = None
        if resp.status_code == 200:
            choices = resp.json().get("choices") or [{}]
            lps = choices[0].get("prompt_logprobs") if isinstance(choices[0], dict) else None
        if not isinstance(lps, list) or len(lps) != len(ids):
            raise EndpointError(f"{client.model} gives no prompt_logprobs on /v1/completions (HTTP "
                                f"{resp.status_code}): scoring over the OpenAI API needs vLLM's "
                                "server; use api='tgi' for TGI and qup serve")
        return {"ids": ids, "logprobs": [None] + [lp[str(t)]["logprob"] for lp, t in zip(lps[1:], ids[1:])]}

    async def _chat(self, client: AsyncInferenceClient, req: Request) -> Completion:
        p = req.params
        messages = self._messages.get(req.prompt)
        if messages is None:
            try:
                messages = json.loads(req.prompt)
            except json.JSONDecodeError:
                raise EndpointError("api='openai' needs prompts made by this generator's "
                                    "render_chat (or a JSON list of messages)") from None
        out = await client.chat_completion(
            messages, model=req.adapter or self.adapter or self._served.get(client.model),
            max_tokens=p.max_new_tokens, seed=p.seed,
            stop=p.stop or None, temperature=0.0 if p.greedy else p.temperature,
            top_p=p.top_p if not p.greedy and p.top_p < 1 else None)
        choice = out.choices[0]
        text = choice.message.content or ""
        finish = FINISH.get(choice.finish_reason, "length")
        if finish == "stop" and not any(s in text for s in p.stop):
            finish = "eos_token"  # OpenAI says "stop" for both; no stop string means EOS
        if finish == "stop":
            text = self._cut(text, p.stop)
        n = out.usage.completion_tokens - (finish == "eos_token") if out.usage else 0
        return Completion(text=text, prompt_tokens=out.usage.prompt_tokens if out.usage else 0,
                          completion_tokens=max(n, 0), finish_reason=finish)
