"""Continuous vs static batching on a mixed open-loop load, both servers in this process.

Requests arrive over time (seeded Poisson arrivals at ``--rate`` per second), most short
(``--short`` new tokens), some long (``--long``): with static batching a short request that comes
while a long batch runs waits for all of it; with continuous batching it joins at the next step.
The same schedule runs against both; we print throughput (generated tokens/s over the whole run)
and p50/p95 latency, overall and for short requests.

Run: ``.venv/bin/python benchmarks/serve_mixed.py [--model smollm2-135m-instruct --requests 48]``
"""
from __future__ import annotations

import argparse
import asyncio
import random
import time

import aiohttp

from toolkit.models import resolve_model
from toolkit.serve import TGIServer


def schedule(args) -> list[tuple[float, int, str]]:
    """(arrival second, max_new_tokens, prompt) per request, the same for both runs."""
    rng, t, out = random.Random(args.seed), 0.0, []
    for i in range(args.requests):
        t += rng.expovariate(args.rate)
        long = rng.random() < args.long_share
        q = (f"Write a long story about {i + 3} apples." if long
             else f"What is {i + 2} + {2 * i + 1}?")
        prompt = f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
        out.append((t, args.long if long else args.short, prompt))
    return out


async def run_load(url: str, plan) -> tuple[list[tuple[int, float, int]], float]:
    """Send ``plan`` open-loop; ((max_new_tokens, latency s, generated tokens) per request, makespan)."""
    results = []

    async def one(session, at, n, prompt, start):
        await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
        sent = time.perf_counter()
        body = {"inputs": prompt, "parameters": {"max_new_tokens": n, "do_sample": True,
                                                 "temperature": 0.7, "seed": int(at * 1000)}}
        async with session.post(f"{url}/generate", json=body) as r:
            got = (await r.json())["details"]["generated_tokens"]
        results.append((n, time.perf_counter() - sent, got))
    timeout = aiohttp.ClientTimeout(total=3600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        start = time.perf_counter()
        await asyncio.gather(*(one(session, at, n, p, start) for at, n, p in plan))
    return results, time.perf_counter() - start


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--rate", type=float, default=4.0, help="mean arrivals per second")
    ap.add_argument("--short", type=int, default=16)
    ap.add_argument("--long", type=int, default=256)
    ap.add_argument("--long-share", type=float, default=0.25)
    ap.add_argument("--max-batch-size", type=int, default=16)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    model, plan = resolve_model(args.model), schedule(args)
    print(f"{args.requests} requests at {args.rate}/s, {args.long_share:.0%} long "
          f"({args.long} vs {args.short} new tokens), max batch {args.max_batch_size}")
    print(f"{'batching':<11} {'tok/s':>8} {'p50 s':>7} {'p95 s':>7} {'short p50':>10} "
          f"{'short p95':>10} {'max batch':>10}")
    for continuous in (False, True):
        with TGIServer(model, max_batch_size=args.max_batch_size, dtype=args.dtype,
                       continuous_batching=continuous) as server:
            asyncio.run(run_load(server.url, plan[:2]))            # warm-up
            results, seconds = asyncio.run(run_load(server.url, plan))
            max_batch = server.metrics.batch_max_size
        lat = [r[1] for r in results]
        short = [r[1] for r in results if r[0] == args.short]
        tokens = sum(r[2] for r in results)
        print(f"{'continuous' if continuous else 'static':<11} {tokens / seconds:8.1f} "
              f"{pct(lat, 0.5):7.2f} {pct(lat, 0.95):7.2f} {pct(short, 0.5):10.2f} "
              f"{pct(short, 0.95):10.2f} {max_batch:10d}")


if __name__ == "__main__":
    main()
