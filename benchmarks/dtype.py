"""The local engine in float32 vs bfloat16: prefill time, decode tok/s, greedy-output agreement.

N MAWPS problems (offset 900) rendered with the ``math_cot`` prompt, one batch of ``--batch``
sequences at a time, greedy, exactly ``--tokens`` new tokens each (EOS off, so both dtypes do the
same work). Agreement compares completions cut at the first EOS: identical ones, and the mean
fraction of identical leading tokens (common prefix / longer of the two). One run, one machine.

    python benchmarks/dtype.py [--model smollm2-135m-instruct] [--n 32] [--batch 32] [--tokens 128]
"""
from __future__ import annotations

import argparse
import gc
import time

import torch

from toolkit.generation.base import Request, SamplingParams
from toolkit.generation.engine import LocalEngine
from toolkit.models import cpu_has_bf16, device, load_tokenizer
from toolkit.prompts import load_prompt
from toolkit.sources import SourceConfig, load_problems


@torch.inference_mode()
def prefill_s(engine: LocalEngine, prompts: list[str], batch: int) -> float:
    """Seconds for the prompt forward passes alone (left-padded batches, as the engine does)."""
    start = time.perf_counter()
    for i in range(0, len(prompts), batch):
        ids = [engine.encode(p) for p in prompts[i:i + batch]]
        width, pad = max(map(len, ids)), engine.tokenizer.pad_token_id
        x = torch.tensor([[pad] * (width - len(s)) + s for s in ids], device=engine.device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in ids], device=engine.device)
        engine.model(input_ids=x, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                     logits_to_keep=1)
    return time.perf_counter() - start


def run(model: str, dtype: str, prompts: list[str], args) -> dict:
    engine = LocalEngine(model, batch_size=args.batch, dtype=dtype)
    eos = set(engine.eos_ids)
    engine.eos_ids = set()   # fixed length: every sequence makes exactly --tokens tokens
    params = SamplingParams(max_new_tokens=args.tokens, do_sample=False)
    engine.generate([Request(p, SamplingParams(max_new_tokens=4, do_sample=False))
                     for p in prompts[:args.batch]], progress=False)          # warm-up
    pre = min(prefill_s(engine, prompts, args.batch) for _ in range(2))
    start = time.perf_counter()
    out = engine.generate([Request(p, params) for p in prompts], progress=False)
    total = time.perf_counter() - start
    ids = [next((c.token_ids[:k] for k, t in enumerate(c.token_ids) if t in eos), c.token_ids)
           for c in out]
    n = sum(c.completion_tokens for c in out)
    res = dict(dtype=engine.dtype, prefill=pre, total=total, tokens=n, ids=ids,
               e2e=n / total, decode=n / max(total - pre, 1e-9))
    del engine, out
    gc.collect()
    return res


def agreement(a: list[list[int]], b: list[list[int]]) -> tuple[int, float]:
    same = sum(x == y for x, y in zip(a, b))
    fracs = []
    for x, y in zip(a, b):
        k = next((i for i, (s, t) in enumerate(zip(x, y)) if s != t), min(len(x), len(y)))
        fracs.append(k / max(len(x), len(y)) if max(len(x), len(y)) else 1.0)
    return same, sum(fracs) / len(fracs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=32, help="MAWPS problems (offset 900)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=128)
    args = ap.parse_args()

    template = load_prompt("math_cot")
    questions = load_problems(SourceConfig(source="mawps", offset=900, limit=args.n))["question"]
    tok = load_tokenizer(args.model)   # what LocalEngine.render_chat does
    prompts = [tok.apply_chat_template(template.messages(q), tokenize=False, add_generation_prompt=True)
               for q in questions]

    fp32, bf16 = (run(args.model, d, prompts, args) for d in ("float32", "bfloat16"))
    print(f"model={args.model} n={len(prompts)} batch={args.batch} new_tokens={args.tokens} "
          f"device={device()} "
          f"threads={torch.get_num_threads()} cpu_native_bf16={cpu_has_bf16()}")
    for r in (fp32, bf16):
        print(f"{r['dtype']:>9s}: prefill {r['prefill'] * 1000:8.0f} ms   decode {r['decode']:7.1f} tok/s"
              f"   end-to-end {r['e2e']:7.1f} tok/s   ({r['tokens']} tokens in {r['total']:.1f} s)")
    print(f"bf16/fp32: decode x{bf16['decode'] / fp32['decode']:.2f}   "
          f"end-to-end x{bf16['e2e'] / fp32['e2e']:.2f}   prefill time x{bf16['prefill'] / fp32['prefill']:.2f}")
    same, lead = agreement(fp32["ids"], bf16["ids"])
    print(f"greedy agreement fp32 vs bf16: identical completions {same}/{len(prompts)}   "
          f"mean identical leading-token fraction {lead:.3f}")


if __name__ == "__main__":
    main()
