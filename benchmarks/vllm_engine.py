"""vLLM vs our transformers engine at equal batch: generation (sampling k at T=0.7 with real EOS,
and greedy), scoring (learner NLL), and the fraction of the cores' compute bound each reaches.

One run, one process (the vLLM engine idles in its own process while transformers runs). Tokens/s
counts completion tokens actually made (EOS ends rows: both engines stop where they stop). The
bound is 2 x parameters FLOPs per token against a measured matmul peak in the same dtype on the
same threads. Target (issue 20): vLLM >= 1.5x transformers for the SLM on 2 quiet CPU cores.
Print the CPU flags with every figure (``lscpu``).

    python benchmarks/vllm_engine.py [--model smollm2-135m-instruct] [--problems 32] [--k 4]
        [--tokens 128] [--batch 64] [--dtype auto] [--contention]

``--contention`` runs a second 2-thread job (a matmul loop in another process) during the timed
part, as when another job shares the machine.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

BUSY = ("import torch; torch.set_num_threads(2); a = torch.randn(1024, 1024)\n"
        "while True: a @ a")


def peak_gflops(dtype: str, n: int = 2048, reps: int = 8) -> float:
    import torch
    dt = getattr(torch, dtype)
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - start) / 1e9


def timed(gen, requests) -> tuple[float, list]:
    start = time.perf_counter()
    out = gen.generate(requests, progress=False)
    return sum(c.completion_tokens for c in out) / (time.perf_counter() - start), out


def main() -> None:
    import torch

    from toolkit.generation import Request, SamplingParams, make_generator
    from toolkit.generation.roles import VLLMOptions
    from toolkit.prompts import load_prompt
    from toolkit.sources import SourceConfig, load_problems

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--problems", type=int, default=32)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64, help="the transformers engine's batch size")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--contention", action="store_true", help="a second 2-thread job runs meanwhile")
    args = ap.parse_args()

    t = make_generator(args.model, backend="transformers", batch_size=args.batch, dtype=args.dtype)
    start = time.perf_counter()
    v = make_generator(args.model, backend="vllm", dtype=args.dtype, vllm=VLLMOptions(kv_cache_gib=2))
    started = time.perf_counter() - start
    template = load_prompt("math_cot")
    questions = load_problems(SourceConfig(source="svamp", limit=args.problems))["question"]
    prompts = [t.render_chat(template.messages(q)) for q in questions]
    sampled = [Request(p, SamplingParams(max_new_tokens=args.tokens, temperature=0.7, seed=i * 10 + j))
               for i, p in enumerate(prompts) for j in range(args.k)]
    greedy = [Request(p, SamplingParams(max_new_tokens=args.tokens, do_sample=False)) for p in prompts]
    v.generate(greedy[:4], progress=False)          # warm-up both
    t.generate(greedy[:4], progress=False)
    params = sum(p.numel() for p in t.model.parameters())
    bound = peak_gflops(t.dtype) * 1e9 / (2 * params)
    busy = subprocess.Popen([sys.executable, "-c", BUSY]) if args.contention else None
    print(f"model={args.model} ({params / 1e6:.0f}M) dtype={t.dtype} threads={torch.get_num_threads()} "
          f"vllm start {started:.0f} s; compute bound {bound:.0f} tok/s (quiet)"
          f"{'; a second 2-thread job runs' if busy else ''}")
    try:
        _measure(args, v, t, prompts, sampled, greedy, bound)
    finally:
        if busy:
            busy.kill()


def _measure(args, v, t, prompts, sampled, greedy, bound) -> None:
    print(f"{'workload':>18s} {'vllm tok/s':>11s} {'transformers':>13s} {'ratio':>6s} "
          f"{'vllm % bound':>13s} {'tf % bound':>11s}")
    for name, reqs in ((f"sample k={args.k} T=0.7", sampled), ("greedy", greedy)):
        rv, _ = timed(v, reqs)
        rt, _ = timed(t, reqs)
        print(f"{name:>18s} {rv:11.1f} {rt:13.1f} {rv / rt:6.2f} {100 * rv / bound:12.1f}% "
              f"{100 * rt / bound:10.1f}%")
    _, outs = timed(t, greedy)
    completions = [c.text for c in outs]
    s0 = time.perf_counter()
    sv = v.score(prompts, completions)
    s1 = time.perf_counter()
    st = t.score(prompts, completions)
    s2 = time.perf_counter()
    n = sum(map(len, st))
    nll = [(-sum(a) / len(a), -sum(b) / len(b)) for a, b in zip(sv, st) if a]
    print(f"{'score (NLL)':>18s} {n / (s1 - s0):11.1f} {n / (s2 - s1):13.1f} "
          f"{(s2 - s1) / (s1 - s0):6.2f}   max |NLL diff| {max(abs(a - b) for a, b in nll):.2e}")


if __name__ == "__main__":
    main()
