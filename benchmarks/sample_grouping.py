"""Sampling throughput by chunk size: ``sample`` decodes a chunk of ``shard_size`` problems in mixed
batches (what ``--shard`` splits by, so a shard's texts equal an unsharded run's), against chunks
of one problem (each problem's k traces decoded alone, stop 4's ``Request.group``). Prints both
rates and their ratio, measured in one run.

    .venv/bin/python benchmarks/sample_grouping.py --problems 12 --k 2 --max-new-tokens 64
"""
import argparse
import logging
import time

import torch

from toolkit.generation.roles import RoleConfig, TransformersOptions
from toolkit.stages.sample import SampleConfig, sample
from toolkit.sources import SourceConfig, load_problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--problems", type=int, default=12)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    logging.disable(logging.INFO)
    torch.set_num_threads(2)
    src = SourceConfig(source="mawps", split="test", offset=508, limit=args.problems)
    problems = load_problems(src)
    gen = None
    rates = {}
    for chunk in (args.problems, 1):
        slm = RoleConfig(args.model, transformers=TransformersOptions(batch_size=args.batch_size))
        cfg = SampleConfig(slm=slm, problems=src, k=args.k, max_new_tokens=args.max_new_tokens,
                           temperature=0.7, top_p=0.95, shard_size=chunk)
        gen = gen or cfg.generator()
        t0 = time.perf_counter()
        ds = sample(problems, cfg, gen)
        dt = time.perf_counter() - t0
        rates[chunk] = sum(ds["completion_tokens"]) / dt
        print(f"chunks of {chunk:>3} problem(s) {dt:7.1f} s {rates[chunk]:7.1f} tok/s")
    print(f"chunk of {args.problems} / chunks of 1, throughput: {rates[args.problems] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
