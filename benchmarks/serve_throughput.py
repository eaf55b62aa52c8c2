"""Serving throughput on SmolLM2-135M, with the server in this process (a background thread).

(a) server tokens/s with 16 concurrent clients vs 1 client (target >= 3x: dynamic batching);
(b) EndpointGenerator tokens/s vs a bare aiohttp load generator, same prompts and params
    (target >= 95%: the client adds little over raw HTTP).

Run: ``.venv/bin/python benchmarks/serve_throughput.py [--requests 16 --max-new-tokens 32]``
"""
from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
import torch

from toolkit.generation.base import Request, SamplingParams
from toolkit.generation.endpoint import EndpointGenerator
from toolkit.models import resolve_model
from toolkit.serve import TGIServer


def payload(req: Request) -> dict:
    p = req.params
    return {"inputs": req.prompt, "parameters": {
        "max_new_tokens": p.max_new_tokens, "do_sample": True, "temperature": p.temperature,
        "top_p": p.top_p, "seed": p.seed, "details": True}}


async def bare_load(url: str, reqs: list[Request], clients: int) -> tuple[int, float]:
    """``clients`` closed-loop clients posting /generate; (generated tokens, seconds)."""
    queue = list(reqs)
    tokens = 0

    async def client(session):
        nonlocal tokens
        while queue:
            req = queue.pop(0)
            async with session.post(f"{url}/generate", json=payload(req)) as r:
                tokens += (await r.json())["details"]["generated_tokens"]
    start = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as s:
        await asyncio.gather(*(client(s) for _ in range(clients)))
    return tokens, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--single-requests", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = resolve_model("smollm2-135m-instruct")
    with TGIServer(model, max_batch_size=16) as server:
        gen = EndpointGenerator(model, [server.url], concurrency=16)   # no cache: every request sent
        questions = [f"A shop sells {i + 3} apples for ${2 * i + 5}. How much do {i + 7} apples cost?"
                     for i in range(args.requests)]
        reqs = [Request(gen.render_chat([{"role": "user", "content": q}]),
                        SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.7,
                                       top_p=0.95, seed=i)) for i, q in enumerate(questions)]
        asyncio.run(bare_load(server.url, reqs[:4], 4))   # warm-up

        tok1, s1 = asyncio.run(bare_load(server.url, reqs[:args.single_requests], 1))
        tok16, s16 = asyncio.run(bare_load(server.url, reqs, 16))
        r1, r16 = tok1 / s1, tok16 / s16
        print(f"(a) server, 1 client:   {r1:7.1f} tok/s ({tok1} tokens in {s1:.1f} s)")
        print(f"    server, 16 clients: {r16:7.1f} tok/s ({tok16} tokens in {s16:.1f} s)")
        print(f"    ratio 16/1: {r16 / r1:.2f}x (target >= 3x); "
              f"max batch size {server.metrics.batch_max_size}, "
              f"mean batch {server.metrics.batch_size_sum / server.metrics.batch_count:.1f}")

        tokb, sb = asyncio.run(bare_load(server.url, reqs, 16))
        start = time.perf_counter()
        outs = gen.generate(reqs, progress=False)
        se = time.perf_counter() - start
        toke = sum(c.completion_tokens + (c.finish_reason == "eos_token") for c in outs)
        rb, re_ = tokb / sb, toke / se
        print(f"(b) bare aiohttp, 16 concurrent:     {rb:7.1f} tok/s ({tokb} tokens in {sb:.1f} s)")
        print(f"    EndpointGenerator, concurrency 16: {re_:7.1f} tok/s ({toke} tokens in {se:.1f} s)")
        print(f"    ratio client/bare: {100 * re_ / rb:.1f}% (target >= 95%)")


if __name__ == "__main__":
    main()
