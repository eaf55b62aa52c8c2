"""EndpointGenerator against the local TGI-compatible server: same rows and scores as the local
engine, async use, faults survived, cache resumes after SIGKILL, replicas with health checks."""
from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import requests
import uvicorn
from starlette.responses import JSONResponse

from toolkit.generation import make_generator
from toolkit.generation.base import Request, SamplingParams, ScoreError
from toolkit.generation.cache import RequestCache
from toolkit.generation.endpoint import EndpointError, EndpointGenerator
from toolkit.generation.engine import LocalEngine
from toolkit.serve import TGIServer

QUESTIONS = [f"What is {i} + {i * 3}?" for i in range(12)]


class Faults:
    """Test-only ASGI wrapper: fails ``rate`` of POSTs with 5xx/429 or stalls them past timeouts."""

    def __init__(self, app, rate=0.2, stall_s=0.0, delay_s=0.0, seed=0):
        self.app, self.rate, self.stall_s, self.delay_s = app, rate, stall_s, delay_s
        self.rng, self.injected = random.Random(seed), 0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            await asyncio.sleep(self.delay_s)
            x = self.rng.random()
            if x < self.rate:
                self.injected += 1
                if self.stall_s and x < self.rate / 3:
                    await asyncio.sleep(self.stall_s)       # the client gives up first
                else:
                    status = self.rng.choice([500, 502, 503, 429])
                    return await JSONResponse({"error": "injected", "error_type": "overloaded"},
                                              status, headers={"Retry-After": "0.05"})(scope, receive, send)
        await self.app(scope, receive, send)


def metric(url: str, name: str) -> float:
    for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(name)


def make_requests(gen, n=12, max_new_tokens=10):
    out = []
    for i, q in enumerate(QUESTIONS[:n]):
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.9, top_p=0.95,
                                do_sample=i % 3 != 0, seed=1000 + i, stop=["e"] if i % 4 == 1 else [])
        out.append(Request(gen.render_chat([{"role": "user", "content": q}]), params))
    return out


def rows(completions):
    return [(c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason) for c in completions]


# Rows are compared across backends one sequence per forward pass, in fp32 on both sides: the
# random tiny model's flat distributions turn other rounding into different draws.
@pytest.fixture(scope="module")
def server(tiny_model):
    with TGIServer(tiny_model, max_batch_size=1, dtype="float32") as s:
        yield s


@pytest.fixture(scope="module")
def local_engine(tiny_model):
    return LocalEngine(tiny_model, batch_size=1, dtype="float32")


@pytest.fixture(scope="module")
def local_rows(local_engine):
    return rows(local_engine.generate(make_requests(local_engine), progress=False))


@pytest.mark.parametrize("api", ["tgi", "openai"])
def test_endpoint_rows_equal_local_engine(server, tiny_model, local_rows, tmp_path, api):
    gen = make_generator(tiny_model, backend="endpoint", endpoints=[server.url], api=api,
                         concurrency=4, cache_dir=str(tmp_path))
    reqs = make_requests(gen)
    assert rows(gen.generate(reqs, progress=False)) == local_rows
    assert {r[3] for r in local_rows} >= {"length", "stop"}
    # a repeated run is answered from the cache: the server sees no new request
    before = metric(server.url, "tgi_request_count")
    assert rows(gen.generate(reqs, progress=False)) == local_rows
    assert metric(server.url, "tgi_request_count") == before


def test_score_equals_local(server, tiny_model, local_engine, tmp_path):
    gen = EndpointGenerator(tiny_model, [server.url], cache_dir=str(tmp_path))
    prompts = [gen.render_chat([{"role": "user", "content": q}]) for q in QUESTIONS[:3]] + ["Hi"]
    completions = ["The answer is 4.", "3 + 9 = 12", "", " there my friend"]
    remote = gen.score(prompts, completions, progress=True)
    local = local_engine.score(prompts, completions)
    assert [len(r) for r in remote] == [len(x) for x in local] and remote[2] == []
    assert all(abs(a - b) < 1e-3 for r, x in zip(remote, local) for a, b in zip(r, x))
    before = metric(server.url, "tgi_request_count")
    assert gen.score(prompts, completions) == remote          # answered from the cache
    assert metric(server.url, "tgi_request_count") == before
    with pytest.raises(ScoreError, match="row 0"):
        gen.score(["Hello wor"], ["ld"])


def test_score_needs_tgi(server, tiny_model):
    gen = EndpointGenerator(tiny_model, [server.url], api="openai")
    assert gen.dtype == ""
    with pytest.raises(EndpointError, match="needs vLLM's server; use api='tgi'"):
        gen.score(["Hi"], [" there"])


def test_dead_endpoint_inside_a_running_loop_raises_endpoint_error(tiny_model, free_port):
    gen = EndpointGenerator(tiny_model, [f"http://127.0.0.1:{free_port}"], max_retries=1,
                            backoff=0.01, health_interval=0.01)

    async def handler():   # e.g. a Gradio handler calling the sync API
        return gen.generate(make_requests(gen, n=1), progress=False)
    with pytest.raises(EndpointError, match="failed after 2 attempts"):
        asyncio.run(handler())
    with pytest.raises(EndpointError, match="failed after 2 attempts"):
        gen.generate(make_requests(gen, n=1), progress=False)   # and without a loop


def test_agenerate_equals_generate(server, tiny_model):
    gen = EndpointGenerator(tiny_model, [server.url], concurrency=4)
    reqs = make_requests(gen, n=4)

    async def handler():
        return await gen.agenerate(reqs, progress=False), await gen.ascore(["Hi"], [" there"])
    got, scores = asyncio.run(handler())
    assert rows(got) == rows(gen.generate(reqs, progress=False))
    assert scores == gen.score(["Hi"], [" there"])


def test_faults_and_stalls_give_the_fault_free_rows(tiny_model, local_rows, tmp_path):
    faults = {}

    def wrap(app):
        faults["f"] = Faults(app, rate=0.2, stall_s=2.5, seed=1)
        return faults["f"]
    with TGIServer(tiny_model, max_batch_size=1, dtype="float32", wrap_app=wrap) as s:
        gen = EndpointGenerator(tiny_model, [s.url], concurrency=4, timeout=1.5, backoff=0.05,
                                max_retries=10, cache_dir=str(tmp_path))
        got = rows(gen.generate(make_requests(gen), progress=False))
    assert faults["f"].injected >= 2
    assert got == local_rows


def _serve_app(app, port):
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server


def test_retries_exhausted_names_url_not_token(tiny_model, free_port):
    async def always_503(scope, receive, send):
        await JSONResponse({"error": "down"}, 503)(scope, receive, send)
    srv = _serve_app(always_503, free_port)
    try:
        url = f"http://127.0.0.1:{free_port}"
        gen = EndpointGenerator(tiny_model, [url], token="hf_supersecrettoken123", max_retries=2,
                                backoff=0.01, health_interval=0.01)
        with pytest.raises(EndpointError) as e:
            gen.generate(make_requests(gen, n=1), progress=False)
        assert url in str(e.value) and "hf_supersecrettoken123" not in str(e.value)
    finally:
        srv.should_exit = True


def test_invalid_request_fails_fast(server, tiny_model):
    gen = EndpointGenerator(tiny_model, [server.url], max_retries=5, backoff=5)
    req = Request("hi", SamplingParams(max_new_tokens=5000))
    t = time.perf_counter()
    with pytest.raises(EndpointError, match="422"):
        gen.generate([req], progress=False)
    assert time.perf_counter() - t < 5   # no retries on a validation error


def test_replicas_spread_and_skip_unhealthy(server, tiny_model, local_rows, free_port):
    dead = f"http://127.0.0.1:{free_port}"
    with TGIServer(tiny_model, max_batch_size=1, dtype="float32") as second:
        gen = EndpointGenerator(tiny_model, [server.url, second.url, dead], concurrency=6,
                                health_interval=0.2)
        counts = [metric(u, "tgi_request_count") for u in (server.url, second.url)]
        assert rows(gen.generate(make_requests(gen), progress=False)) == local_rows
        assert metric(server.url, "tgi_request_count") > counts[0]
        assert metric(second.url, "tgi_request_count") > counts[1]
        # the dead replica comes back: after its health check passes it gets work again
        with TGIServer(tiny_model, port=free_port, max_batch_size=1, dtype="float32") as revived:
            time.sleep(0.3)
            gen.generate(make_requests(gen, n=6, max_new_tokens=4), progress=False)
            assert metric(revived.url, "tgi_request_count") > 0


SCRIPT = textwrap.dedent("""
    import sys
    from toolkit.generation.endpoint import EndpointGenerator
    from toolkit.generation.base import Request, SamplingParams, ScoreError
    model, url, cache = sys.argv[1:4]
    gen = EndpointGenerator(model, [url], concurrency=2, cache_dir=cache)
    reqs = [Request(gen.render_chat([{"role": "user", "content": f"Q{i}"}]),
                    SamplingParams(max_new_tokens=6, seed=i)) for i in range(16)]
    gen.generate(reqs, progress=False)
""")


def test_sigkill_then_rerun_sends_no_finished_request(tiny_model, tmp_path):
    with TGIServer(tiny_model, max_batch_size=1, wrap_app=lambda app: Faults(app, rate=0, delay_s=0.25)) as s:
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        proc = subprocess.Popen([sys.executable, "-c", SCRIPT, tiny_model, s.url, str(tmp_path)],
                                env=env, stderr=subprocess.DEVNULL)
        cache = RequestCache(tmp_path)
        deadline = time.time() + 60
        while len(cache) < 4 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = len(cache)
        assert 0 < done < 16
        before = metric(s.url, "tgi_request_count")
        rerun = subprocess.run([sys.executable, "-c", SCRIPT, tiny_model, s.url, str(tmp_path)],
                               env=env, capture_output=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert metric(s.url, "tgi_request_count") - before == 16 - done
        assert len(cache) == 16
