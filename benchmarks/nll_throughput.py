"""Adaptation-cost (NLL) scoring throughput: batched forward passes vs one sequence per pass.

Real traces: SmolLM2-135M's own samples (``--traces DIR``, e.g. ``runs/cpu-demo/samples``), or, when
none is given, traces it writes now on MAWPS single-op problems. Both arms score the same rows
with the same engine and the same SFT texts (:func:`toolkit.diagnostics.adaptation_cost.sft_texts`);
only ``batch_size`` differs. Prints tokens/s of each and the ratio, measured in one run, and checks
the two give the same NLLs. Target (issue 9): batched >= 4x.

    python benchmarks/nll_throughput.py [--model smollm2-135m-instruct] [--rows 64] [--batch 16]
        [--traces runs/cpu-demo/samples] [--dtype auto]
"""
from __future__ import annotations

import argparse
import time

from toolkit.diagnostics.adaptation_cost import nll, sft_texts
from toolkit.generation.engine import LocalEngine


def traces(engine: LocalEngine, rows: int, path: str | None):
    from datasets import Dataset

    from toolkit.generation import Request, SamplingParams
    from toolkit.io import load
    from toolkit.prompts import load_prompt
    from toolkit.sources import SourceConfig, load_problems
    if path:
        return load(path).select(range(rows))
    template = load_prompt("math_cot")
    questions = load_problems(SourceConfig(source="mawps", offset=508, limit=rows))["question"]
    reqs = [Request(engine.render_chat(template.messages(q)), SamplingParams(max_new_tokens=160, seed=i))
            for i, q in enumerate(questions)]
    done = engine.generate(reqs)
    return Dataset.from_dict({"question": questions, "completion": [c.text for c in done],
                              "prompt_id": [template.id] * rows, "trace_id": [str(i) for i in range(rows)]})


def timed(engine: LocalEngine, batch: int, texts) -> tuple[float, list]:
    engine.batch_size = batch
    start = time.perf_counter()
    out = nll(engine, *texts, progress=False)
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--traces", default=None)
    ap.add_argument("--dtype", default="auto")
    args = ap.parse_args()

    engine = LocalEngine(args.model, batch_size=32, dtype=args.dtype)
    ds = traces(engine, args.rows, args.traces)
    texts = sft_texts(ds, engine.tokenizer)
    timed(engine, args.batch, (texts[0][:4], texts[1][:4]))          # warm-up
    one_s, one = timed(engine, 1, texts)
    many_s, many = timed(engine, args.batch, texts)
    tokens = sum(n for _, n in one)
    worst = max(abs(a - b) for (a, _), (b, _) in zip(one, many))
    print(f"model {engine.model_id} ({engine.dtype}), {len(ds)} traces, {tokens} scored tokens "
          f"(mean {tokens / len(ds):.0f}), prompt+completion tokens scored per row")
    print(f"one sequence per forward: {one_s:7.2f} s  {tokens / one_s:8.0f} tok/s")
    print(f"batched ({args.batch:>3} per forward): {many_s:7.2f} s  {tokens / many_s:8.0f} tok/s")
    print(f"ratio batched / one-per-forward: {one_s / many_s:.2f}x   (max |NLL difference| {worst:.2e})")


if __name__ == "__main__":
    main()
