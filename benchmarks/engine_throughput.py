"""Tokens/s of raw ``model.generate`` vs the local engine, at batch 1 and at each batch size.

Same prompts, same lengths (greedy; EOS off in the engine, ``min_new_tokens`` in ``generate``, so
every sequence makes exactly N tokens), same batches (prompts length-sorted as the engine does; raw
batches left-padded), one run. engine/raw per batch size shows what the engine itself adds.
Targets (issue 2): engine at batch 1 within 10% of raw; batched ≥ 3× batch 1.

    python benchmarks/engine_throughput.py [--model smollm2-135m-instruct] [--tokens 64]
        [--prompts 16] [--batch 8 16] [--dtype auto]
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
    ap.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    args = ap.parse_args()

    engine = LocalEngine(args.model, dtype=args.dtype)
    engine.eos_ids = set()  # fixed-length runs: every sequence makes exactly --tokens tokens
    model, tok = engine.model, engine.tokenizer
    questions = load_problems(SourceConfig(source="svamp", limit=args.prompts))["question"]
    prompts = [engine.render_chat([{"role": "user", "content": q}]) for q in questions]
    prompts.sort(key=len, reverse=True)  # the engine's batching order, so raw batches match it
    params = SamplingParams(max_new_tokens=args.tokens, do_sample=False)
    n_tokens = args.tokens * len(prompts)

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return n_tokens / (time.perf_counter() - start)

    @torch.inference_mode()
    def raw_at(bs: int):
        def run():
            for i in range(0, len(prompts), bs):
                ids = [engine.encode(p) for p in prompts[i:i + bs]]
                width = max(map(len, ids))
                x = torch.tensor([[tok.pad_token_id] * (width - len(s)) + s for s in ids])
                mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in ids])
                model.generate(x.to(engine.device), attention_mask=mask.to(engine.device),
                               max_new_tokens=args.tokens, min_new_tokens=args.tokens,
                               do_sample=False, pad_token_id=tok.pad_token_id)
        return run

    def engine_at(bs: int):
        def run():
            engine.batch_size = bs
            engine.generate([Request(p, params) for p in prompts], progress=False)
        return run

    timed(engine_at(1))  # warm-up
    sizes = [1] + [b for b in args.batch if b != 1]
    results = {bs: (timed(raw_at(bs)), timed(engine_at(bs))) for bs in sizes}
    base = results[1][1]
    print(f"model={args.model} dtype={engine.dtype} prompts={len(prompts)} "
          f"new_tokens={args.tokens} threads={torch.get_num_threads()}")
    print(f"{'batch':>5s} {'raw tok/s':>10s} {'engine tok/s':>13s} {'engine/raw':>11s} "
          f"{'engine vs engine b1':>20s}")
    for bs, (raw, eng) in results.items():
        print(f"{bs:5d} {raw:10.1f} {eng:13.1f} {eng / raw:11.3f} {eng / base:19.2f}x")
    print(f"engine batch 1 / raw batch 1 = {base / results[1][0]:.3f} (target ≥ 0.90)")
    best = max(eng for bs, (_, eng) in results.items() if bs != 1) if len(results) > 1 else base
    print(f"best batched engine / engine batch 1 = {best / base:.2f} (target ≥ 3)")


if __name__ == "__main__":
    main()
