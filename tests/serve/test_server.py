"""The TGI-compatible server, driven by real clients (huggingface_hub, text-generation, openai)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests

from toolkit.generation.base import Request, SamplingParams
from toolkit.generation.engine import LocalEngine
from toolkit.serve import TGIServer

PROMPT = "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="session")
def lora_adapter(tiny_model, tmp_path_factory):
    """A LoRA adapter on the tiny model with non-zero B weights, so it changes outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    cfg = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj"],
                     init_lora_weights=False)
    path = tmp_path_factory.mktemp("adapter") / "math"
    get_peft_model(model, cfg).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def server(tiny_model, lora_adapter, engine_options):
    with TGIServer(tiny_model, adapters={"math": lora_adapter}, dtype="float32",
                   **engine_options) as s:
        yield s


def metric(url: str, name: str) -> float:
    for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def _local(tiny_model, adapter, backend):
    """The in-process engine of ``backend``; vLLM's with tests/generation/test_vllm.py's options, so
    the suite starts that engine once (one LoRA engine per process and options)."""
    if backend == "transformers":
        return LocalEngine(tiny_model, dtype="float32")
    from toolkit.generation.roles import VLLMOptions
    from toolkit.generation.vllm_engine import VLLMEngine
    return VLLMEngine(tiny_model, adapters={"a": adapter}, dtype="float32",
                      options=VLLMOptions(max_lora_rank=8, kv_cache_gib=0.5, enforce_eager=True))


def test_hub_client_text_generation_matches_local_engine(server, tiny_model, lora_adapter, engine_options):
    from huggingface_hub import InferenceClient
    client = InferenceClient(server.url)
    out = client.text_generation(PROMPT, max_new_tokens=8, details=True, do_sample=True, seed=7,
                                 temperature=0.9, decoder_input_details=True)
    local = _local(tiny_model, lora_adapter, engine_options["backend"]).generate(
        [Request(PROMPT, SamplingParams(max_new_tokens=8, temperature=0.9, seed=7))], progress=False)[0]
    assert out.generated_text == local.text
    d = out.details
    assert d.finish_reason in ("length", "eos_token") and d.seed == 7
    assert [t.id for t in d.tokens][:local.completion_tokens] == local.token_ids
    assert d.generated_tokens == len(d.tokens) >= local.completion_tokens
    n_prompt = len(requests.post(f"{server.url}/tokenize", json={"inputs": PROMPT}).json())
    assert len(d.prefill) == n_prompt and d.prefill[0].logprob is None
    assert all(t.logprob < 0 for t in d.prefill[1:])
    # streaming: the token texts add up to the final generated_text, which carries the details
    events = list(client.text_generation(PROMPT, max_new_tokens=8, details=True, stream=True,
                                         do_sample=True, seed=7, temperature=0.9))
    assert events[-1].generated_text == out.generated_text
    assert "".join(e.token.text for e in events if not e.token.special) == out.generated_text
    assert events[-1].details.generated_tokens == len(events)
    assert all(e.generated_text is None for e in events[:-1])
    full = client.text_generation(PROMPT, max_new_tokens=8, do_sample=True, seed=7,
                                  temperature=0.9, return_full_text=True)
    assert full == PROMPT + out.generated_text


def test_text_generation_package_client(server):
    from text_generation import Client
    client = Client(server.url)
    resp = client.generate(PROMPT, max_new_tokens=6, do_sample=True, seed=3, top_k=20)
    assert resp.details.generated_tokens == len(resp.details.tokens) > 0
    stream = list(client.generate_stream(PROMPT, max_new_tokens=6, do_sample=True, seed=3, top_k=20))
    assert stream[-1].generated_text == resp.generated_text
    assert [s.token.id for s in stream] == [t.id for t in resp.details.tokens]
    greedy = client.generate(PROMPT, max_new_tokens=6).generated_text
    assert greedy == client.generate(PROMPT, max_new_tokens=6, seed=99).generated_text


def test_chat_completions_hub_and_openai_clients(server):
    import openai
    from huggingface_hub import InferenceClient
    msgs = [{"role": "user", "content": "What is 2+3?"}]
    hub = InferenceClient(server.url)
    out = hub.chat_completion(msgs, max_tokens=6, seed=5, temperature=0.8)
    text = out.choices[0].message.content
    assert out.usage.completion_tokens >= 1 and out.choices[0].finish_reason in ("length", "stop")
    chunks = list(hub.chat_completion(msgs, max_tokens=6, seed=5, temperature=0.8, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    r = oai.chat.completions.create(model="tgi", messages=msgs, max_tokens=6, seed=5, temperature=0.8)
    assert r.choices[0].message.content == text
    s = oai.chat.completions.create(model="tgi", messages=msgs, max_tokens=6, seed=5, temperature=0.8,
                                    stream=True, stream_options={"include_usage": True})
    parts = list(s)
    assert "".join(p.choices[0].delta.content or "" for p in parts if p.choices) == text
    assert parts[-1].usage.completion_tokens == out.usage.completion_tokens


def test_completions_and_models_with_openai_sdk(server):
    """TGI's /v1/completions (plain and streamed, one or several prompts) and /v1/models."""
    import openai
    from huggingface_hub import InferenceClient
    oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    want = InferenceClient(server.url).text_generation(PROMPT, max_new_tokens=6, seed=5,
                                                       temperature=0.8, do_sample=True)
    r = oai.completions.create(model="tgi", prompt=PROMPT, max_tokens=6, seed=5, temperature=0.8)
    assert r.object == "text_completion" and r.choices[0].text == want
    assert r.choices[0].finish_reason in ("length", "stop") and r.usage.completion_tokens >= 1
    parts = list(oai.completions.create(model="tgi", prompt=PROMPT, max_tokens=6, seed=5,
                                        temperature=0.8, stream=True))
    assert "".join(p.choices[0].text for p in parts) == want
    assert parts[-1].choices[0].finish_reason == r.choices[0].finish_reason
    assert parts[-1].usage.completion_tokens == r.usage.completion_tokens
    greedy = InferenceClient(server.url).text_generation("Hello", max_new_tokens=5, adapter_id="math")
    two = oai.completions.create(model="math", prompt=[PROMPT, "Hello"], max_tokens=5, temperature=0)
    assert [c.index for c in two.choices] == [0, 1] and two.choices[1].text == greedy
    streamed = {0: "", 1: ""}
    for p in oai.completions.create(model="math", prompt=[PROMPT, "Hello"], max_tokens=5,
                                    temperature=0, stream=True):
        streamed[p.choices[0].index] += p.choices[0].text
    assert streamed == {0: two.choices[0].text, 1: greedy}
    models = [m.id for m in oai.models.list()]
    assert models[0] == server.engine.model_id and "math" in models


def test_adapter_changes_output_and_base_stays_base(server):
    from huggingface_hub import InferenceClient
    client = InferenceClient(server.url)
    base = client.text_generation(PROMPT, max_new_tokens=8)
    tuned = client.text_generation(PROMPT, max_new_tokens=8, adapter_id="math")
    assert tuned != base
    assert client.text_generation(PROMPT, max_new_tokens=8) == base
    msgs = [{"role": "user", "content": "What is 2+3?"}]

    def chat(model):
        return requests.post(f"{server.url}/v1/chat/completions", json={
            "model": model, "messages": msgs, "max_tokens": 8, "temperature": 0}).json()
    rendered = server.engine.render_chat(msgs)
    assert chat("math")["choices"][0]["message"]["content"] == client.text_generation(
        rendered, max_new_tokens=8, adapter_id="math")   # chat picks the adapter by `model`
    assert chat("tgi")["choices"][0]["message"]["content"] == client.text_generation(
        rendered, max_new_tokens=8)
    assert "math" in requests.get(f"{server.url}/info").json()["adapters"]


@pytest.mark.parametrize("body, needle", [
    ("{not json", "JSON"),
    ({"inputs": "hi", "parameters": {"max_new_tokens": -3}}, "max_new_tokens"),
    ({"inputs": "hi", "parameters": {"max_new_tokens": 0}}, "max_new_tokens"),
    ({"inputs": "hi", "parameters": {"max_new_tokens": 10**7}}, "max_new_tokens"),
    ({"inputs": "hi " * 2100, "parameters": {"max_new_tokens": 1}}, "inputs"),
    ({"inputs": "hi", "parameters": {"adapter_id": "nope"}}, "nope"),
    ({"inputs": "hi", "parameters": {"do_sample": True, "temperature": 0}}, "temperature"),
    ({"inputs": "hi", "parameters": {"top_p": 1.5}}, "top_p"),
    ({"inputs": "hi", "parameters": {"top_k": 0}}, "top_k"),
    ({"inputs": "hi", "parameters": {"stop": ["a", "b", "c", "d", "e"]}}, "stop"),
    ({"inputs": "", "parameters": {}}, "inputs"),
    ({"parameters": {}}, "inputs"),
])
def test_validation_errors_are_422_and_server_stays_up(server, body, needle):
    data = body if isinstance(body, str) else json.dumps(body)
    for route in ("/generate", "/generate_stream", "/"):
        r = requests.post(server.url + route, data=data, timeout=30)
        assert r.status_code == 422, (route, r.text)
        assert r.json()["error_type"] == "validation" and needle in r.json()["error"]
    assert requests.get(f"{server.url}/health").status_code == 200
    ok = requests.post(f"{server.url}/generate", json={"inputs": "hi", "parameters": {"max_new_tokens": 2}})
    assert ok.status_code == 200 and ok.json()["details"]["generated_tokens"] == 2


def test_concurrent_requests_share_forward_passes(tiny_model, backend, engine_options):
    with TGIServer(tiny_model, max_batch_size=8, dtype="float32", **engine_options) as server:
        assert metric(server.url, "tgi_batch_max_size") == 0

        def one(i):
            return requests.post(f"{server.url}/generate", json={"inputs": PROMPT, "parameters": {
                "max_new_tokens": 24, "do_sample": True, "seed": i}}, timeout=60).json()
        with ThreadPoolExecutor(8) as pool:
            outs = list(pool.map(one, range(8)))
        assert all(o["details"]["generated_tokens"] >= 1 for o in outs)
        assert metric(server.url, "tgi_request_count") == 8
        assert metric(server.url, "tgi_batch_max_size") > 1
        if backend == "transformers":    # vLLM's scheduler steps are its own, not counted here
            assert metric(server.url, "tgi_batch_inference_count") < 8   # fewer batches than requests
        # batching does not change what a seed produces
        alone = one(3)
        assert alone["generated_text"] == outs[3]["generated_text"]


def test_endpoint_score_with_adapter_equals_local(server, tiny_model, lora_adapter):
    from toolkit.generation.endpoint import EndpointGenerator
    prompts, completions = [PROMPT, PROMPT, "Hello"], ["5", "It is 2 + 3 = 5.", " there"]
    local = LocalEngine(tiny_model, adapters={"math": lora_adapter}, dtype="float32")
    remote = EndpointGenerator(tiny_model, [server.url])
    for adapter in (None, "math"):
        want, got = local.score(prompts, completions, adapter), remote.score(prompts, completions, adapter)
        assert [len(r) for r in got] == [len(r) for r in want]
        assert all(abs(a - b) < 1e-3 for r, x in zip(got, want) for a, b in zip(r, x))
    assert remote.score(prompts, completions, "math") != remote.score(prompts, completions)


def test_info_tokenize_health(server):
    info = requests.get(f"{server.url}/info").json()
    assert info["max_total_tokens"] == 2048 and info["max_input_tokens"] == 2047
    assert info["model_dtype"] == "torch.float32"
    toks = requests.post(f"{server.url}/tokenize", json={"inputs": "Hello there"}).json()
    assert "".join(t["text"] for t in toks) == "Hello there"
    assert requests.get(f"{server.url}/health").status_code == 200


def test_qup_serve_cli(tiny_model, free_port, backend):
    proc = subprocess.Popen([sys.executable, "-m", "toolkit.cli", "serve", "--model", tiny_model,
                             "--backend", backend, "--dtype", "float32",
                             "--port", str(free_port), "--max-input-tokens", "100",
                             "--max-total-tokens", "200", "--max-concurrent-requests", "3",
                             "--max-batch-size", "2"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{free_port}"
        for _ in range(3000):     # vLLM starts in 40-110 s on CPU
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                time.sleep(0.1)
        r = requests.post(f"{url}/generate", json={"inputs": "hi", "parameters": {"max_new_tokens": 3}})
        assert r.status_code == 200 and r.json()["details"]["generated_tokens"] == 3
        info = requests.get(f"{url}/info").json()
        assert [info[k] for k in ("max_input_tokens", "max_total_tokens", "max_concurrent_requests",
                                  "max_client_batch_size")] == [100, 200, 3, 2]
        engine = [p for p in psutil.Process(proc.pid).children(recursive=True) if "python" not in p.name()]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    # vLLM's engine core outlives a terminated front end unless reaped (it held GiBs per run)
    gone, alive = psutil.wait_procs(engine, timeout=15)
    assert not alive, [p.name() for p in alive]
