"""``train``: LoRA SFT of the SLM on a trace dataset with TRL's ``SFTTrainer`` + PEFT.

Each TRACE row becomes TRL's conversational prompt-completion format: the prompt is re-rendered
with the template named in ``prompt_id`` (the same messages the sampler sent), the completion is
one assistant turn. TRL applies the tokenizer's chat template and, with ``completion_only_loss``,
masks the prompt (system + user turn + ``<|im_start|>assistant\\n``) to -100; the closing
``<|im_end|>`` stays a target, so the trained model learns to stop.

Output dir: the adapter (``adapter_config.json`` + ``adapter_model.safetensors``), the tokenizer and
``qup_train.json`` (base model Hub id/revision, dataset provenance, config, metrics). Checkpoints
of an interrupted run in the same dir are resumed from.

Several processes (``torchrun --nproc_per_node N -m toolkit.cli train ...`` or ``accelerate launch
--config_file jobs/accelerate/ddp.yaml -m toolkit.cli train ...``): TRL's trainer runs DDP (or
FSDP/DeepSpeed, as the accelerate config says), each rank trains on its part of every epoch, and
only rank 0 writes the adapter, the tokenizer and ``qup_train.json``; the others wait for it.
``$QUP_TRAIN_SEEN_LOG=DIR`` (debugging, tests) makes each rank log the trace ids it trains on.

Example:
    >>> cfg = TrainConfig(model="tiny-random", data="runs/x/rft", out="runs/x/adapter", max_steps=20)
    >>> train_command(cfg)["metrics"]["steps"]                                  # doctest: +SKIP
    20
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError, volatile
from ..models import ADAPTER_CONFIG, ADAPTER_WEIGHTS

from ..sft import TrainDataError, to_chat  # noqa: F401 (TrainDataError: part of train's API)

log = logging.getLogger(__name__)

RUN_FILE = "qup_train.json"
SEEN_LOG = "QUP_TRAIN_SEEN_LOG"   # env: a dir where each rank logs the examples it trains on
# on CPU, idle vLLM engines are stopped (least recently used first) only until this much memory
# is free: LoRA on a 135M-1.5B model fits, and the evaluation engine kept saves its next start
TRAIN_FREE_GIB = 8.0
LINEAR_PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class TrainConfig:
    """Config of ``qup train`` (LoRA SFT, loss on the completion only)."""
    model: str = field(default="tiny-random", metadata={"help": "base model: preset, local dir or Hub id"})
    data: str = field(default="", metadata={"help": "trace dataset dir (datasets.save_to_disk)"})
    out: str = field(default="", metadata={"help": "output dir: adapter, tokenizer, qup_train.json, checkpoints"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale = alpha / r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    target_modules: list[str] = field(default_factory=lambda: list(LINEAR_PROJ),
                                      metadata={"help": "modules that get LoRA adapters"})
    learning_rate: float = field(default=2e-4, metadata={"help": "peak learning rate (linear decay)"})
    epochs: float = field(default=1.0, metadata={"help": "epochs over the data (ignored if max_steps > 0)"})
    max_steps: int = field(default=-1, metadata={"help": "optimizer steps; -1: use epochs"})
    batch_size: int = field(default=8, metadata={"help": "examples per device per step"})
    grad_accum: int = field(default=1, metadata={"help": "gradient accumulation steps"})
    max_length: int = field(default=1024, metadata={"help": "max tokens per example (longer are truncated)"})
    seed: int = field(default=0, metadata={"help": "seed of LoRA init, shuffling and dropout"})
    dtype: str = field(default="auto", metadata={"help": "auto (bf16 on CUDA and CPUs with native "
                                                 "bf16, else float32) | float32 | bfloat16"})
    warmup_ratio: float = field(default=0.0, metadata={"help": "fraction of steps of linear warmup"})
    logging_steps: int = volatile(5, "log the loss every N steps")
    save_steps: int = volatile(200, "checkpoint every N steps (for resuming)")
    dataset_repo: str = field(default="", metadata={"help": "Hub repo of the data (provenance)"})
    dataset_revision: str = field(default="", metadata={"help": "revision of the data (provenance)"})
    dataset_config: str = field(default="", metadata={"help": "config name of the data (provenance)"})

    def __post_init__(self):
        for name in ("data", "out"):
            if not getattr(self, name):
                raise ConfigError(f"train: '{name}' is required (e.g. --{name} runs/x/...)")
        checks = {"lora_r": self.lora_r > 0, "lora_alpha": self.lora_alpha > 0,
                  "lora_dropout": 0 <= self.lora_dropout < 1, "learning_rate": self.learning_rate > 0,
                  "batch_size": self.batch_size > 0, "grad_accum": self.grad_accum > 0,
                  "max_length": self.max_length > 0, "logging_steps": self.logging_steps > 0,
                  "save_steps": self.save_steps > 0, "warmup_ratio": 0 <= self.warmup_ratio < 1,
                  "target_modules": bool(self.target_modules),
                  "max_steps": self.max_steps == -1 or self.max_steps > 0,
                  "epochs": self.epochs > 0 or self.max_steps > 0}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"train: invalid value for {bad[0]}: {getattr(self, bad[0])!r}")


# ------------------------------------------------------------------------------------ data
def load_traces(path: str):
    """The trace dataset at ``path``: a stage output dir (``path/data``), a ``save_to_disk`` dir,
    or a .parquet/.jsonl file."""
    from ..io import load

    if not Path(path).exists():
        raise TrainDataError(f"training data not found: {path}")
    try:
        return load(path)
    except FileNotFoundError as e:
        raise TrainDataError(f"training data: {e}") from None


# ------------------------------------------------------------------------------------ trainer
def _make_trainer_cls():
    from trl import SFTTrainer

    class QupSFTTrainer(SFTTrainer):
        def _send_telemetry(self):  # no network from training
            pass

    return QupSFTTrainer


def _progress_callback():
    from transformers import TrainerCallback

    class StepCounter(TrainerCallback):
        """Where this run started (after any resume) and how many steps it really ran."""
        start_step, steps_run = 0, 0

        def on_train_begin(self, args, state, control, **kw):
            self.start_step = state.global_step

        def on_step_end(self, args, state, control, **kw):
            self.steps_run += 1

    return StepCounter()


def build_trainer(ds, cfg: TrainConfig, callbacks=None):
    """An ``SFTTrainer`` over TRACE rows ``ds`` with a fresh LoRA adapter on ``cfg.model``."""
    import torch
    from peft import LoraConfig
    from trl import SFTConfig

    from ..models import dtype_name, load_tokenizer, resolve_dtype, resolve_model

    if len(ds) == 0:
        raise TrainDataError(f"no training rows in {cfg.data or 'the given dataset'}")
    chat = to_chat(ds)
    cuda = torch.cuda.is_available()
    dtype = resolve_dtype(cfg.dtype)
    if dtype == torch.float16 and not cuda:
        raise ConfigError("train: dtype float16 needs a CUDA GPU; use auto, bfloat16 or float32")
    bf16, fp16 = dtype == torch.bfloat16, dtype == torch.float16
    names = {f.name for f in dataclasses.fields(SFTConfig)}   # renamed in transformers 5.2x
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    args = SFTConfig(
        output_dir=cfg.out, learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, max_length=cfg.max_length, seed=cfg.seed,
        data_seed=cfg.seed, warmup_steps=cfg.warmup_ratio, logging_steps=cfg.logging_steps,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=2,
        completion_only_loss=True, packing=False, **{checkpointing: False},
        bf16=bf16, fp16=fp16, use_cpu=not cuda, report_to="none", push_to_hub=False,
        model_init_kwargs={"dtype": dtype_name(dtype)},
    )
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.target_modules), task_type="CAUSAL_LM")
    trainer_cls = _make_trainer_cls()
    try:
        return trainer_cls(model=resolve_model(cfg.model), args=args, train_dataset=chat,
                           processing_class=load_tokenizer(cfg.model), peft_config=lora,
                           callbacks=callbacks)
    except ValueError as e:
        if "Target modules" in str(e):
            raise ConfigError(f"train: target_modules {cfg.target_modules}: {e}") from None
        raise


def train(ds, cfg: TrainConfig) -> dict:
    """Train a LoRA adapter on TRACE rows ``ds``; save it into ``cfg.out``; return the metrics."""
    from transformers.trainer_utils import get_last_checkpoint

    from ..models import model_info

    info = model_info(cfg.model)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    resume = get_last_checkpoint(str(out))
    if resume:
        log.info("resuming from %s", resume)
    counter = _progress_callback()
    trainer = build_trainer(ds, cfg, callbacks=[counter])
    truncated = sum(len(ids) >= cfg.max_length for ids in trainer.train_dataset["input_ids"])
    if truncated:
        log.warning("%d of %d examples longer than max_length=%d were truncated (they lose the "
                    "closing <|im_end|>)", truncated, len(ds), cfg.max_length)
    if os.environ.get(SEEN_LOG):
        _log_seen(trainer, ds, Path(os.environ[SEEN_LOG]))
    result = trainer.train(resume_from_checkpoint=resume)
    main = trainer.is_world_process_zero()
    trainer.save_model(str(out))          # writes on rank 0 only (gathers FSDP/ZeRO-3 shards)
    if main:
        trainer.processing_class.save_pretrained(str(out))
        _point_adapter_at_hub(out, info.hub_id)

    model = trainer.model
    trainable, total = model.get_nb_trainable_parameters()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    metrics = {
        # mean loss of the steps this invocation ran (None when a finished run is re-run)
        "train_loss": result.training_loss if counter.steps_run else None,
        "train_runtime": result.metrics.get("train_runtime"),
        "train_samples": len(ds), "steps": trainer.state.global_step, "epochs": trainer.state.epoch,
        "trainable_params": trainable, "total_params": total, "truncated_rows": truncated,
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
        "losses": losses, "resumed_from": Path(resume).name if resume else "",
        "start_step": counter.start_step, "steps_run": counter.steps_run,
        "device": str(trainer.args.device), "dtype": trainer.args.model_init_kwargs["dtype"],
        "processes": trainer.args.world_size,
    }
    run = {"base_model": info.hub_id, "base_model_revision": info.revision,
           "dataset_repo": cfg.dataset_repo, "dataset_revision": cfg.dataset_revision,
           "dataset_config": cfg.dataset_config, "config": dataclasses.asdict(cfg), "metrics": metrics}
    if main:
        (out / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n")
    trainer.accelerator.wait_for_everyone()   # the adapter is complete on disk for every rank
    return metrics


def _log_seen(trainer, ds, where: Path) -> None:
    """Log, per rank and epoch, the trace id of every example this rank's batches hold (to
    ``where/seen-rank{R}.jsonl``): the tokenised rows are matched back to ``ds`` by their ids."""
    from transformers import TrainerCallback

    tokenised = trainer.train_dataset["input_ids"]
    if len(tokenised) != len(ds):   # TRL dropped rows (e.g. fully masked): no 1:1 match left
        raise TrainDataError(f"${SEEN_LOG}: the trainer kept {len(tokenised)} of {len(ds)} rows; "
                             "cannot match its examples back to trace ids")
    by_ids = {tuple(ids): tid for ids, tid in zip(tokenised, ds["trace_id"])}
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"seen-rank{trainer.args.process_index}.jsonl"
    epoch = {"n": -1}
    collate = trainer.data_collator

    class Epochs(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kw):
            epoch["n"] += 1

    def logged(features):
        with path.open("a") as f:
            for feat in features:
                f.write(json.dumps({"epoch": epoch["n"], "trace_id": by_ids[tuple(feat["input_ids"])]}) + "\n")
        return collate(features)
    trainer.data_collator = logged
    trainer.add_callback(Epochs())


def _point_adapter_at_hub(out: Path, hub_id: str) -> None:
    """adapter_config.json names the base model's Hub id, not the local dir it was loaded from."""
    path = out / ADAPTER_CONFIG
    data = json.loads(path.read_text())
    data["base_model_name_or_path"] = hub_id
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def train_command(cfg: TrainConfig) -> dict:
    """``qup train``: load ``cfg.data``, train, and summarise where the adapter went."""
    ds = load_traces(cfg.data)
    if len(ds) == 0:
        raise TrainDataError(f"no training rows in {cfg.data}")
    engines = sys.modules.get("toolkit.generation.vllm_engine")
    if engines:          # idle vLLM engines of this process hold GiBs that training may need
        engines.release(free_gib=TRAIN_FREE_GIB)
    metrics = train(ds, cfg)
    summary = {k: v for k, v in metrics.items() if k != "losses"}
    weights = (Path(cfg.out) / ADAPTER_WEIGHTS).read_bytes()
    return {"adapter": str(Path(cfg.out)), "run_file": str(Path(cfg.out) / RUN_FILE),
            "adapter_sha256": hashlib.sha256(weights).hexdigest(), "data": cfg.data,
            "metrics": summary}
