"""Evaluation decoding with one LoRA adapter: kept apart (PEFT computes the low-rank path at every
layer and step) against merged into the weights (what ``LocalEngine`` does when a single adapter is
the default, i.e. ``evaluate``). Greedy, the same problems, one run; prints both rates, their
ratio and how many texts are identical.

    .venv/bin/python benchmarks/merged_adapter.py --adapter runs/cpu-paradox/adapters/rft --problems 32
    .venv/bin/python benchmarks/merged_adapter.py            # a random LoRA (r=16, every linear layer)
"""
import argparse
import logging
import tempfile
import time

import torch

from toolkit.generation.base import Request, SamplingParams
from toolkit.generation.engine import LocalEngine
from toolkit.sources import SourceConfig, load_problems


def random_adapter(model: str) -> str:
    from peft import LoraConfig, get_peft_model

    from toolkit.models import load_model
    from toolkit.stages.train import LINEAR_PROJ
    base, _ = load_model(model, dtype="float32")
    out = tempfile.mkdtemp()
    get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules=list(LINEAR_PROJ),
                                    init_lora_weights=False)).save_pretrained(out)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--adapter", default="", help="a trained adapter dir (default: a random LoRA)")
    ap.add_argument("--problems", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    logging.disable(logging.INFO)
    torch.set_num_threads(2)
    adapter = args.adapter or random_adapter(args.model)
    problems = load_problems(SourceConfig(source="mawps", split="test", offset=900, limit=args.problems))
    params = SamplingParams(max_new_tokens=args.max_new_tokens, do_sample=False, temperature=0.0)
    results = {}
    for merged in (False, True):
        engine = LocalEngine(args.model, adapters={"a": adapter}, default_adapter="a" if merged else None,
                             batch_size=args.batch_size, dtype="float32")
        assert engine.merged == merged
        prompts = [engine.render_chat([{"role": "user", "content": q}]) for q in problems["question"]]
        t0 = time.perf_counter()
        out = engine.generate([Request(p, params, adapter="a") for p in prompts], progress=False)
        dt = time.perf_counter() - t0
        tokens = sum(c.completion_tokens for c in out)
        results[merged] = (dt, [c.text for c in out])
        print(f"{'merged' if merged else 'kept apart':>10}: {dt:6.1f} s, {tokens} tokens, {tokens / dt:6.1f} tok/s")
    same = sum(a == b for a, b in zip(results[False][1], results[True][1]))
    print(f"merged is {results[False][0] / results[True][0]:.2f}x faster; identical texts {same}/{len(problems)}")


if __name__ == "__main__":
    main()
