"""Security review of the server: poisoned requests, abandoned work, huge and malformed bodies,
limits; all over real HTTP to a real server on the tiny model."""
from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from toolkit.serve import TGIServer

PROMPT = "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n"
LONG = 1500    # new tokens of a request that runs for a while (the tiny model rarely says EOS)


@pytest.fixture(scope="module")
def server(tiny_model, engine_options):
    with TGIServer(tiny_model, dtype="float32", max_batch_size=8, max_concurrent_requests=6,
                   max_input_tokens=1800, max_total_tokens=2000, **engine_options) as s:
        yield s


def metric(url: str, name: str) -> float:
    for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(name)


def post(url, body, route="/generate", **kw):
    data = body if isinstance(body, str) else json.dumps(body)
    return requests.post(url + route, data=data, headers={"Content-Type": "application/json"},
                         timeout=60, **kw)


def gen(params):
    return {"inputs": PROMPT, "parameters": {"max_new_tokens": 12, **params}}


def wait_idle(url, timeout=10.0) -> float:
    """Seconds until no row is decoding (raises after ``timeout``)."""
    start = time.monotonic()
    while (busy := (metric(url, "tgi_batch_current_size"), metric(url, "tgi_queue_size"))) != (0, 0):
        assert time.monotonic() - start < timeout, (
            f"still decoding after {timeout} s: batch, queue = {busy}, "
            f"{metric(url, 'tgi_request_generated_tokens_sum'):.0f} tokens generated in all")
        time.sleep(0.05)
    return time.monotonic() - start


# ---------------------------------------------------------------------- 1. poisoned requests
POISONS = [
    '{"inputs": "hi", "parameters": {"do_sample": true, "temperature": NaN}}',
    '{"inputs": "hi", "parameters": {"temperature": Infinity}}',
    gen({"do_sample": True, "temperature": 1e-300}),     # 0 as TGI's f32
    gen({"temperature": 1e39}),                           # inf as f32
    gen({"do_sample": True, "seed": 2**64}),              # not a u64
    gen({"top_p": 1e-300}),
]


def test_poisoned_requests_are_422_and_neighbours_finish(server):
    """NaN/1e-300 temperatures and seeds over u64 used to pass validation and crash the
    shared decode step: every request of the batch got 424."""
    valid = [gen({"do_sample": True, "seed": i}) for i in range(3)]
    valid.append(gen({"do_sample": True, "temperature": 1e-40, "seed": 1}))  # f32 > 0: allowed
    valid.append(gen({"do_sample": True, "seed": 2**64 - 1}))                  # a u64
    with ThreadPoolExecutor(len(valid) + len(POISONS)) as pool:
        got = list(pool.map(lambda b: post(server.url, b), valid + POISONS))
    for r in got[:len(valid)]:
        assert r.status_code == 200, r.text
        assert r.json()["details"]["generated_tokens"] >= 1
    assert got[len(valid) - 1].json()["details"]["seed"] == 2**64 - 1
    for r in got[len(valid):]:
        assert r.status_code == 422, r.text
        assert r.json()["error_type"] == "validation"
    alone = post(server.url, valid[0]).json()
    assert alone["generated_text"] == got[0].json()["generated_text"]


# ---------------------------------------------------------------------- 2. abandoned work, 429
def test_client_disconnect_cancels_its_decoding(server):
    before = metric(server.url, "tgi_request_generated_tokens_sum")
    body = gen({"max_new_tokens": LONG, "do_sample": True, "seed": 0})
    with requests.post(f"{server.url}/generate_stream", json=body, stream=True, timeout=60) as r:
        lines = r.iter_lines()
        assert next(lines).startswith(b"data:")
    assert wait_idle(server.url) < 5
    assert metric(server.url, "tgi_request_generated_tokens_sum") - before < LONG / 2
    before = metric(server.url, "tgi_request_generated_tokens_sum")
    with pytest.raises(requests.exceptions.ReadTimeout):   # a non-streaming client giving up
        requests.post(f"{server.url}/generate", json=body, timeout=0.5)
    assert wait_idle(server.url) < 5
    assert metric(server.url, "tgi_request_generated_tokens_sum") - before < LONG / 2


def test_queue_is_bounded_with_tgi_429(server):
    from huggingface_hub import InferenceClient
    from huggingface_hub.errors import OverloadedError
    body = gen({"max_new_tokens": LONG, "do_sample": True, "seed": 0})
    held = [requests.post(f"{server.url}/generate_stream", json=body, stream=True, timeout=60)
            for _ in range(6)]
    try:
        for r in held:
            assert r.status_code == 200
        r = post(server.url, gen({}))
        assert r.status_code == 429
        assert r.json() == {"error": "Model is overloaded", "error_type": "overloaded"}
        assert post(server.url, gen({}), "/generate_stream").status_code == 429
        with pytest.raises(OverloadedError):
            InferenceClient(server.url).text_generation(PROMPT, max_new_tokens=2)
    finally:
        for r in held:
            r.close()
    wait_idle(server.url, timeout=30)      # never-read streams: cancelled at their next token
    time.sleep(0.2)
    assert post(server.url, gen({})).status_code == 200     # the slots came back


def test_limits_are_settings_like_tgi_launcher_flags(server):
    info = requests.get(f"{server.url}/info").json()
    assert (info["max_input_tokens"], info["max_total_tokens"]) == (1800, 2000)
    assert (info["max_concurrent_requests"], info["max_client_batch_size"]) == (6, 8)
    r = post(server.url, {"inputs": "hi " * 1900, "parameters": {"max_new_tokens": 1}})
    assert r.status_code == 422 and "1800" in r.json()["error"]
    r = post(server.url, {"inputs": "hi", "parameters": {"max_new_tokens": 2000}})
    assert r.status_code == 422 and "2000" in r.json()["error"]


# ---------------------------------------------------------------------- 3. huge prompts
def test_huge_prompts_are_rejected_before_tokenising(server):
    huge = "hello world " * 160_000          # 1.9 MB: under the payload limit
    t = time.monotonic()
    r = post(server.url, {"inputs": huge, "parameters": {"max_new_tokens": 2}})
    assert r.status_code == 422 and "characters" in r.json()["error"], r.text
    assert time.monotonic() - t < 1.0
    r = post(server.url, {"inputs": huge * 3, "parameters": {"max_new_tokens": 2}})
    assert r.status_code == 413 and r.json()["error_type"] == "validation"
    # truncate keeps the tail, without tokenising all of it
    r = post(server.url, {"inputs": huge, "parameters": {"max_new_tokens": 2, "truncate": 8,
                                                           "decoder_input_details": True}})
    assert r.status_code == 200 and len(r.json()["details"]["prefill"]) == 8


def test_tokenising_runs_off_the_event_loop(server):
    """While one huge prompt is tokenised, /health keeps answering: several health checks complete
    inside the tokenise call (a blocked event loop would answer none until it ends). Ordering, not
    a time threshold, so a loaded machine cannot flake it."""
    text = "hello world " * 150_000
    span, done = {}, threading.Event()

    def tokenize():
        try:
            span["start"] = time.monotonic()
            assert post(server.url, {"inputs": text}, "/tokenize").status_code == 200
            span["end"] = time.monotonic()
        finally:
            done.set()
    threading.Thread(target=tokenize).start()
    answered = []
    while not done.is_set():
        assert requests.get(f"{server.url}/health", timeout=60).status_code == 200
        answered.append(time.monotonic())
        time.sleep(0.01)
    inside = [t for t in answered if span["start"] < t < span["end"]]
    assert len(inside) >= 3, (len(inside), span["end"] - span["start"])


# ---------------------------------------------------------------------- 4. malformed bodies
class _Errors(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.mark.parametrize("route, body", [
    ("/generate", "[" * 100_000 + "]" * 100_000),
    ("/generate", '{"inputs": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    ("/generate", '{"inputs": "' + "[" * 5 + '\\ud800 lone", "parameters": {"max_new_tokens": 2}}'),
    ("/generate", '{"inputs": "hi", "stream": "yes"}'),
    ("/tokenize", '{"inputs": "\\udfff"}'),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [7]}]}),
    ("/v1/chat/completions", {"messages": [{"role": 3, "content": "hi"}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stream": True,
                              "stream_options": "yes"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stream": True,
                              "stream_options": {"include_usage": "yes"}}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "model": 5}),
    ("/v1/completions", {"prompt": 5}),
    ("/v1/completions", {"prompt": "hi", "suffix": "x"}),
    ("/v1/completions", {"prompt": ["a"] * 9}),
])
def test_malformed_bodies_are_422_json_without_traceback(server, route, body):
    errors = _Errors()
    loggers = [logging.getLogger(n) for n in ("uvicorn.error", "toolkit.serve", "starlette")]
    for lg in loggers:
        lg.addHandler(errors)
    try:
        r = post(server.url, body, route)
    finally:
        for lg in loggers:
            lg.removeHandler(errors)
    assert r.status_code == 422, r.text
    assert r.json()["error_type"] == "validation" and r.json()["error"]
    assert not errors.records, [e.getMessage() for e in errors.records]
    assert requests.get(f"{server.url}/health").status_code == 200


# ---------------------------------------------------------------------- 6. continuous batching
def test_new_requests_join_the_running_batch(server):
    """A short request sent while a long one decodes is answered while the long one still runs
    (it used to wait for the whole running batch), and joining does not change its text."""
    short = {"inputs": "Hello there", "parameters": {"max_new_tokens": 4}}   # greedy
    alone = post(server.url, short).json()["generated_text"]
    wait_idle(server.url)
    body = gen({"max_new_tokens": LONG, "do_sample": True, "seed": 0})
    with requests.post(f"{server.url}/generate_stream", json=body, stream=True, timeout=60) as r:
        lines = r.iter_lines()
        assert next(lines).startswith(b"data:")          # the long request is decoding
        finished = {}

        def read():   # timestamps the long request's last event as it arrives
            for line in lines:
                if line and json.loads(line[len(b"data:"):]).get("generated_text") is not None:
                    finished["long"] = time.monotonic()
        reader = threading.Thread(target=read)
        reader.start()
        got = post(server.url, short)
        answered = time.monotonic()
        reader.join(timeout=120)
    assert answered < finished["long"]                   # answered while the long one still ran
    assert got.status_code == 200 and got.json()["generated_text"] == alone


def test_serve_mixed_benchmark_runs(tiny_model):
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_mixed.py"
    out = subprocess.run([sys.executable, str(script), "--model", tiny_model, "--requests", "6",
                          "--rate", "20", "--short", "4", "--long", "40", "--dtype", "float32"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    print(out.stdout)
    rows = [line.split() for line in out.stdout.splitlines()[2:]]
    assert [r[0] for r in rows] == ["static", "continuous"] and all(float(r[1]) > 0 for r in rows)


def test_an_unparseable_request_line_gets_a_json_400(server):
    """A raw control character in the request line never reaches the app; uvicorn's answer is
    still TGI-shaped JSON, and the connection is answered, not dropped."""
    import socket
    from urllib.parse import urlparse
    u = urlparse(server.url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(b"GET /hea\x01lth HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while chunk := s.recv(65536):     # the server closes the connection after its answer
            head += chunk
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head, head
    assert json.loads(head.split(b"\r\n\r\n", 1)[1])["error_type"] == "bad_request"
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200


def test_jobs_cancelled_before_they_start_leave_the_queue_metric(tiny_model):
    """Jobs whose clients left while queued are dropped unstarted, and tgi_queue_size says so
    (it once kept counting them: a full run saw batch 0, queue 6 for good)."""
    import asyncio
    from toolkit.generation import Request, SamplingParams
    from toolkit.generation.engine import LocalEngine
    from toolkit.serve.batcher import Batcher
    batcher = Batcher(LocalEngine(tiny_model, dtype="float32"), max_batch_size=4)
    loop = asyncio.new_event_loop()
    jobs = [batcher.submit(Request("hi", SamplingParams(max_new_tokens=4)), loop) for _ in range(3)]
    assert batcher.metrics.queue_size == 3
    for job in jobs:
        job.close()                                       # gone before the model thread took them
    batcher.start()
    try:
        deadline = time.monotonic() + 10
        while batcher.metrics.queue_size and time.monotonic() < deadline:
            time.sleep(0.05)
        assert batcher.metrics.queue_size == 0 and batcher.metrics.batch_count == 0
    finally:
        batcher.stop()
        loop.close()
