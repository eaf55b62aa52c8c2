"""vLLM engine start-up on CPU: how its compile settings trade start time against throughput.

Each trial starts one engine in a fresh process (as every `qup` stage does), times ``vllm.LLM(...)``,
then greedy and sampled decoding of the same requests, and hashes the greedy texts (do the modes
decode alike?). Modes, each started twice (the second start finds the first one's caches):

- ``default``: torch.compile with vLLM's AOT artifact cache (the default for torch >= 2.10);
- ``no-aot``: ``VLLM_USE_AOT_COMPILE=0``, torch.compile with inductor's own caches;
- ``eager``: ``enforce_eager=True`` (no compilation).

    python benchmarks/vllm_start.py [--model smollm2-135m-instruct] [--problems 16] [--tokens 128]
        [--modes default,no-aot,eager] [--starts 2]

Print the CPU flags with every figure (``lscpu``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

MODES = {"default": ({}, False), "no-aot": ({"VLLM_USE_AOT_COMPILE": "0"}, False), "eager": ({}, True)}


def trial(model: str, problems: int, tokens: int, eager: bool) -> dict:
    """One engine in this process: start seconds, greedy and sampled tok/s, greedy texts' digest."""
    from vllm import LLM, SamplingParams

    from toolkit.generation.roles import VLLMOptions
    from toolkit.generation.vllm_engine import bind_every_cpu, engine_kwargs
    from toolkit.prompts import load_prompt
    from toolkit.sources import SourceConfig, load_problems
    from toolkit.models import resolve_model

    path = resolve_model(model)
    bind_every_cpu()
    start = time.perf_counter()
    llm = LLM(**engine_kwargs(path, "float32", VLLMOptions(kv_cache_gib=2, enforce_eager=eager), False))
    started = time.perf_counter() - start
    template = load_prompt("math_cot")
    tok = llm.get_tokenizer()
    prompts = [tok.apply_chat_template(template.messages(q), tokenize=False, add_generation_prompt=True)
               for q in load_problems(SourceConfig(source="svamp", limit=problems))["question"]]
    out = {"start_s": round(started, 1)}
    for name, params in (("greedy", SamplingParams(max_tokens=tokens, temperature=0)),
                         ("sample", SamplingParams(max_tokens=tokens, temperature=0.7, n=4, seed=0))):
        t0 = time.perf_counter()
        res = llm.generate(prompts, params, use_tqdm=False)
        n = sum(len(c.token_ids) for r in res for c in r.outputs)
        out[f"{name}_tok_s"] = round(n / (time.perf_counter() - t0), 1)
        if name == "greedy":
            out["greedy_digest"] = hashlib.sha256("\0".join(r.outputs[0].text for r in res).encode()).hexdigest()[:12]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--modes", default="default,no-aot,eager")
    ap.add_argument("--starts", type=int, default=2)
    ap.add_argument("--trial", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.trial:
        print("RESULT " + json.dumps(trial(args.model, args.problems, args.tokens, args.trial == "eager")))
        return
    print(f"model={args.model} dtype=float32 problems={args.problems} tokens={args.tokens}")
    print(f"{'mode':>8s} {'start':>6s} {'start s':>8s} {'greedy tok/s':>13s} {'sample tok/s':>13s} digest")
    for mode in args.modes.split(","):
        env, _ = MODES[mode]
        for i in range(args.starts):
            cmd = [sys.executable, __file__, "--trial", mode, "--model", args.model,
                   "--problems", str(args.problems), "--tokens", str(args.tokens)]
            res = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
            line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
            if not line:
                print(f"{mode:>8s} {i + 1:6d} failed: {res.stderr.strip().splitlines()[-1:]}", flush=True)
                continue
            r = json.loads(line[0][7:])
            print(f"{mode:>8s} {i + 1:6d} {r['start_s']:8.1f} {r['greedy_tok_s']:13.1f} "
                  f"{r['sample_tok_s']:13.1f} {r['greedy_digest']}", flush=True)


if __name__ == "__main__":
    main()
