"""``train`` stage: real TRL SFTTrainer + PEFT steps on the tiny random model (CPU, fp32)."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch
from datasets import Dataset

from toolkit.cli import main as qup
from toolkit.config import ConfigError, load_config
from toolkit.models import dtype_name, load_model, resolve_dtype
from toolkit.prompts import load_prompt
from toolkit.schema import TRACE, empty_trace
from toolkit import io
from toolkit.stages.train import RUN_FILE, TrainConfig, TrainDataError, build_trainer, train, train_command

PROMPT = load_prompt("math_cot")
EXAMPLES = [("What is 2+3?", "Two plus three is five."),
            ("Tom has 4 apples and eats 1. How many are left?", "4 - 1 = 3. The answer is: 3")]
IM_END = 2  # <|im_end|> in SmolLM2's tokenizer: eos, end of every chat turn, also the pad token


def traces(examples=EXAMPLES, repeat: int = 1, **overrides) -> Dataset:
    rows = []
    for r in range(repeat):
        for i, (q, c) in enumerate(examples):
            row = empty_trace()
            row.update(question=q, completion=c, prompt_id=PROMPT.id, trace_id=f"p/{i}#{r}",
                       problem_id=f"p/{i}", variant="rft")
            row.update(overrides)
            rows.append(row)
    return Dataset.from_list(rows, features=TRACE)


def prompt_ids(tok, question: str) -> list[int]:
    """The prompt exactly as the sampler / evaluator tokenises it."""
    return tok.apply_chat_template(PROMPT.messages(question), add_generation_prompt=True,
                                   return_dict=True)["input_ids"]


# ------------------------------------------------------------------------------------ config/data errors
def test_config_requires_data_and_out():
    with pytest.raises(ConfigError, match="'data'"):
        TrainConfig(out="x")
    with pytest.raises(ConfigError, match="'out'"):
        TrainConfig(data="x")
    with pytest.raises(ConfigError, match="lora_r"):
        load_config(TrainConfig, {"data": "d", "out": "o", "lora_r": 0})
    cfg = load_config(TrainConfig, {"data": "d", "out": "o"}, {"target_modules": ["q_proj"]})
    assert cfg.target_modules == ["q_proj"] and cfg.lora_alpha == 32


def test_missing_or_empty_data_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(TrainDataError, match="not found: .*nowhere"):
        train_command(TrainConfig(data=str(tmp_path / "nowhere"), out=str(tmp_path / "o")))
    (tmp_path / "junk").mkdir()
    with pytest.raises(TrainDataError, match="no dataset at .*junk"):
        train_command(TrainConfig(data=str(tmp_path / "junk"), out=str(tmp_path / "o")))
    io.save(io.empty(TRACE), tmp_path / "empty")
    with pytest.raises(TrainDataError, match=f"no training rows in {tmp_path / 'empty'}"):
        train_command(TrainConfig(data=str(tmp_path / "empty"), out=str(tmp_path / "o")))
    # The CLI prints such errors as one line, exit code 2.
    capsys.readouterr()
    assert qup(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no training rows in" in err and "Traceback" not in err


def test_bad_rows_are_named(tiny_model, tmp_path):
    cfg = TrainConfig(model=tiny_model, data="mem", out=str(tmp_path / "o"))
    with pytest.raises(TrainDataError, match=r"row p/0#0: prompt_id 'math_cot@00000000'.*changed"):
        build_trainer(traces(prompt_id="math_cot@00000000"), cfg)
    with pytest.raises(TrainDataError, match=r"row p/1#0: empty completion"):
        build_trainer(traces([EXAMPLES[0], ("q", "  ")]), cfg)
    with pytest.raises(TrainDataError, match=r"lacks column\(s\) \['prompt_id'\]"):
        build_trainer(traces().remove_columns("prompt_id"), cfg)


# ------------------------------------------------------------------------------------ labels
def test_labels_mask_the_prompt_and_train_the_closing_im_end(tiny_model, tmp_path):
    trainer = build_trainer(traces(), TrainConfig(model=tiny_model, data="mem", out=str(tmp_path)))
    tok = trainer.processing_class
    assert tok.convert_tokens_to_ids("<|im_end|>") == IM_END == tok.eos_token_id == tok.pad_token_id
    # A batch of two lengths, as the trainer collates it (padding with <|im_end|> as pad token).
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    for i, (question, completion) in enumerate(EXAMPLES):
        n = int(batch["attention_mask"][i].sum())
        ids, labels = batch["input_ids"][i, :n].tolist(), batch["labels"][i, :n].tolist()
        prompt = prompt_ids(tok, question)
        # The same chat template as sampling: system + user turn + "<|im_start|>assistant\n".
        assert ids[:len(prompt)] == prompt
        assert tok.decode(prompt).endswith("<|im_start|>assistant\n")
        assert "You are a helpful AI assistant" in tok.decode(prompt)
        assert all(label == -100 for label in labels[:len(prompt)])
        # Every completion token is a target, including the <|im_end|> closing the assistant turn.
        assert labels[len(prompt):] == ids[len(prompt):]
        assert tok.decode(ids[len(prompt):]) == completion + "<|im_end|>\n"
        end = len(ids) - 1 - ids[::-1].index(IM_END)
        assert end >= len(prompt) and labels[end] == IM_END
        assert all(label == -100 for label in batch["labels"][i, n:].tolist())  # padding
    assert batch["attention_mask"].sum(1).tolist()[0] != batch["attention_mask"].sum(1).tolist()[1]


# ------------------------------------------------------------------------------------ training
def test_train_command_writes_adapter_and_resumes(tiny_model, tmp_path, capsys):
    data, out = tmp_path / "rft", tmp_path / "adapter"
    io.save(traces(repeat=2), data)   # a stage output dir, as rft writes it
    args = ["train", "--model", tiny_model, "--data", str(data), "--out", str(out), "--batch-size", "2",
            "--learning-rate", "0.01", "--lora-dropout", "0", "--logging-steps", "1", "--save-steps", "2",
            "--dataset-repo", "alice/traces"]
    assert qup(args + ["--max-steps", "4"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["adapter"] == str(out)
    assert first["metrics"]["steps"] == first["metrics"]["steps_run"] == 4
    assert first["metrics"]["train_samples"] == 4 and first["metrics"]["resumed_from"] == ""
    assert (out / "checkpoint-4").is_dir()

    run = json.loads((out / RUN_FILE).read_text())
    assert set(run) == {"base_model", "base_model_revision", "dataset_repo", "dataset_revision",
                        "dataset_config", "config", "metrics"}
    assert (run["base_model"], run["base_model_revision"]) == ("qup/tiny-random-llama", "seed0")
    assert run["dataset_repo"] == "alice/traces" and run["config"]["max_steps"] == 4
    want = "cuda:0" if torch.cuda.is_available() else "cpu"     # dtype auto: bf16 on CUDA or native-bf16 CPUs
    assert run["metrics"]["dtype"] == dtype_name(resolve_dtype("auto")) and run["metrics"]["device"] == want
    assert 0 < run["metrics"]["trainable_params"] < run["metrics"]["total_params"]
    adapter_cfg = json.loads((out / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == "qup/tiny-random-llama"
    assert adapter_cfg["r"] == 16 and set(adapter_cfg["target_modules"]) >= {"q_proj", "down_proj"}
    assert (out / "adapter_model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert first["adapter_sha256"] == hashlib.sha256((out / "adapter_model.safetensors").read_bytes()).hexdigest()

    # Interrupted-then-extended: the second run resumes from checkpoint-4 and runs only 2 steps.
    second = train_command(load_config(TrainConfig, {
        "model": tiny_model, "data": str(data), "out": str(out), "max_steps": 6, "batch_size": 2,
        "learning_rate": 1e-2, "lora_dropout": 0.0, "logging_steps": 1, "save_steps": 2}))["metrics"]
    assert second["resumed_from"] == "checkpoint-4"
    assert (second["start_step"], second["steps_run"], second["steps"]) == (4, 2, 6)
    assert (out / "checkpoint-6").is_dir()
    losses = json.loads((out / RUN_FILE).read_text())["metrics"]["losses"]
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.1, losses   # loss falls on repeated data

    # The adapter (loaded through the preset name, as evaluate does) really changes the logits.
    base, tok = load_model("tiny-random")
    tuned, _ = load_model("tiny-random", adapter=str(out))
    ids = torch.tensor([prompt_ids(tok, EXAMPLES[0][0])], device=base.device)
    with torch.no_grad():
        diff = (base(input_ids=ids).logits - tuned(input_ids=ids).logits).abs().max().item()
    assert diff > 1e-2, diff


def test_overfit_reproduces_completion_and_stops(tiny_model, tmp_path):
    question, completion = EXAMPLES[0]
    cfg = TrainConfig(model=tiny_model, data="mem", out=str(tmp_path / "a"), max_steps=24,
                      learning_rate=1e-2, lora_dropout=0.0, batch_size=1, logging_steps=5)
    metrics = train(traces([EXAMPLES[0]]), cfg)
    assert metrics["last_loss"] < metrics["first_loss"]
    model, tok = load_model(tiny_model, adapter=cfg.out)
    enc = tok.apply_chat_template(PROMPT.messages(question), add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True).to(model.device)
    out = model.generate(**enc, max_new_tokens=24, do_sample=False)[0, enc["input_ids"].shape[1]:]
    assert tok.decode(out) == completion + "<|im_end|>"
    assert out[-1].item() == IM_END and len(out) < 24
