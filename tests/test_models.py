"""Offline model preparation: the GGUF → safetensors conversion and the tiny random model."""
import json

import pytest
import torch

from toolkit.models import (ModelError, cpu_has_bf16, dtype_name, load_model, model_info, prepare,
                            resolve_dtype, resolve_model)


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
