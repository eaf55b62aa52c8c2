"""Sampling throughput: mixed batches vs one batch per problem (``Request.group``, what ``sample``
does so a shard decodes exactly like an unsharded run). Prints both rates and their ratio.

    .venv/bin/python benchmarks/sample_grouping.py --problems 12 --k 2 --max-new-tokens 64
"""
import argparse
import time

import torch

from toolkit.generation import Request, SamplingParams, make_generator
from toolkit.prompts import load_prompt
from toolkit.sources import SourceConfig, load_problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--problems", type=int, default=12)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(2)
    gen = make_generator(args.model, batch_size=args.batch_size)
    template = load_prompt("math_cot")
    problems = load_problems(SourceConfig(source="mawps", split="test", offset=508, limit=args.problems))

    def requests(grouped: bool) -> list[Request]:
        return [Request(gen.render_chat(template.messages(p["question"])),
                        SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.7, top_p=0.95,
                                       seed=i, do_sample=True),
                        group=p["id"] if grouped else None)
                for p in problems for i in range(args.k)]
    rates = {}
    for grouped in (False, True):
        t0 = time.perf_counter()
        done = gen.generate(requests(grouped), progress=False)
        dt = time.perf_counter() - t0
        rates[grouped] = sum(c.completion_tokens for c in done) / dt
        print(f"{'one batch per problem' if grouped else 'mixed batches':<22} {dt:7.1f} s {rates[grouped]:7.1f} tok/s")
    print(f"mixed / grouped throughput: {rates[False] / rates[True]:.2f}x")


if __name__ == "__main__":
    main()
