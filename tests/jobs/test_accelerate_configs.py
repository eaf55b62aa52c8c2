"""``jobs/accelerate/*.yaml`` are real accelerate configs: accelerate's own loader accepts them
(it rejects unknown top-level keys), ``accelerate launch`` turns them into the intended
distributed mode, and every FSDP/DeepSpeed key is an option of ``accelerate launch``."""
from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser

CONFIGS = Path(__file__).resolve().parents[2] / "jobs" / "accelerate"
EXPECT = {"single-gpu.yaml": ("NO", {}), "ddp.yaml": ("MULTI_GPU", {"multi_gpu": True}),
          "fsdp.yaml": ("FSDP", {"use_fsdp": True, "fsdp_version": 2}),
          "zero3.yaml": ("DEEPSPEED", {"use_deepspeed": True, "zero_stage": 3})}


def test_the_four_configs_are_there():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXPECT)


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_accelerate_reads_the_config_as_intended(name):
    path = str(CONFIGS / name)
    cfg = load_config_from_file(path)
    kind, flags = EXPECT[name]
    assert str(cfg.distributed_type).rsplit(".", 1)[-1] == kind and cfg.mixed_precision == "bf16"
    parser = launch_command_parser()
    options = {a.dest for a in parser._actions}
    nested = {**(cfg.fsdp_config or {}), **(cfg.deepspeed_config or {})}
    assert not sorted(k for k in nested if k not in options)      # every key is a launch option
    args, _, _ = _validate_launch_command(parser.parse_args(
        ["--config_file", path, "-m", "toolkit.cli", "train", "--help"]))
    assert {k: getattr(args, k) for k in flags} == flags
    assert args.num_processes == (1 if kind == "NO" else 8) and args.mixed_precision == "bf16"
