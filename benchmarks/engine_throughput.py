"""Tokens/s of a raw ``model.generate`` loop vs the local engine at batch 1 and batched.

Same prompts, same lengths (greedy, EOS disabled so every sequence makes exactly N tokens), one run.
Targets (issue 2): engine at batch 1 within 10% of raw; batched ≥ 3× batch 1.

    python benchmarks/engine_throughput.py [--model smollm2-135m-instruct] [--tokens 64] [--prompts 16]
"""
from __future__ import annotations

import argparse
import time

import torch

from toolkit.generation.base import Request, SamplingParams
from toolkit.generation.engine import LocalEngine
from toolkit.sources import SourceConfig, load_problems


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--batch", type=int, nargs="+", default=[8, 16])
    args = ap.parse_args()

    engine = LocalEngine(args.model)
    engine.eos_ids = set()  # fixed-length runs: every sequence makes exactly --tokens tokens
    model, tok = engine.model, engine.tokenizer
    questions = load_problems(SourceConfig(source="svamp", limit=args.prompts))["question"]
    prompts = [engine.render_chat([{"role": "user", "content": q}]) for q in questions]
    params = SamplingParams(max_new_tokens=args.tokens, do_sample=False)
    n_tokens = args.tokens * len(prompts)

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return n_tokens / (time.perf_counter() - start)

    def raw():
        for p in prompts:
            ids = torch.tensor([engine.encode(p)])
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.tokens,
                           min_new_tokens=args.tokens, do_sample=False, pad_token_id=tok.pad_token_id)

    def engine_at(bs: int):
        engine.batch_size = bs
        return lambda: engine.generate([Request(p, params) for p in prompts], progress=False)

    timed(engine_at(1))  # warm-up
    results = {"raw model.generate, batch 1": timed(raw), "engine, batch 1": timed(engine_at(1))}
    for bs in args.batch:
        results[f"engine, batch {bs}"] = timed(engine_at(bs))
    base = results["engine, batch 1"]
    print(f"model={args.model} prompts={len(prompts)} new_tokens={args.tokens} "
          f"threads={torch.get_num_threads()}")
    for name, tps in results.items():
        print(f"{name:28s} {tps:8.1f} tok/s   x{tps / base:.2f} vs engine batch 1")
    print(f"engine batch 1 / raw = {base / results['raw model.generate, batch 1']:.3f} (target ≥ 0.90)")
    best = max(v for k, v in results.items() if k.startswith("engine, batch") and k != "engine, batch 1")
    print(f"best batched / batch 1 = {best / base:.2f} (target ≥ 3)")


if __name__ == "__main__":
    main()
