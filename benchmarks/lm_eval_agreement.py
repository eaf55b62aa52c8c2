"""Per-problem agreement with lm-evaluation-harness on GSM8K (issue 23, item 4).

lm-eval's own ``gsm8k`` task (5-shot ``Question/Answer`` plain text, greedy, stop at
``Question:``, strict and flexible regex extraction, shots ``first_n`` of the shared train split)
runs through ``local-completions`` over HTTP against ``qup serve`` (transformers, float32); our
``evaluate`` runs the same model on the same problems with the same protocol in-process. Prints
the accuracy of each side, the per-problem agreement of extracted answers and of correctness, and
every disagreement with its class (prompt, tokenisation, sampling, extraction); writes
``agreement.json`` and lm-eval's per-problem log under ``--out``. Target: >= 98% on correctness.
Both sides run at once (our side in-process, lm-eval's over HTTP); a killed run resumes from
lm-eval's request cache and our evaluation's chunk cache under ``--out``.

    QUP_BACKEND=transformers .venv/bin/python benchmarks/lm_eval_agreement.py               # SmolLM2-135M, 100
    ... --max-new-tokens 256                     # lm-eval's own default length (both sides)
    QUP_BACKEND=transformers .venv/bin/python benchmarks/lm_eval_agreement.py --limit 200 --model qwen2.5-coder-0.5b-instruct
"""
import argparse
import json
import logging
import os

from toolkit.agreement import run_agreement


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct", help="preset (toolkit/weights.py), dir or Hub id")
    ap.add_argument("--limit", type=int, default=100, help="first N GSM8K test problems (>= 100 for the figure)")
    ap.add_argument("--max-new-tokens", type=int, default=128,
                    help="both sides' limit (lm-eval's max_gen_toks; its default 256 is ~2x the time on 2 busy cores)")
    ap.add_argument("--batch-size", type=int, default=8, help="our chunk size = lm-eval's concurrent requests")
    ap.add_argument("--port", type=int, default=8091)
    ap.add_argument("--out", default="runs/lm-eval-agreement")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("QUP_BACKEND", "transformers")
    s = run_agreement(args.model, limit=args.limit, out=args.out, port=args.port,
                      max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    print(f"model {args.model}, {s['problems']} GSM8K test problems, lm-eval {s['lm_eval_version']}")
    print(f"same prompt {s['same_prompt']}/{s['problems']}, same generated text {s['same_text']}/{s['problems']}")
    print("accuracy: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in s["accuracy"].items()))
    for f in ("strict-match", "flexible-extract"):
        print(f"vs lm-eval {f}: extracted answers agree on {100 * s['answer_agreement'][f]:.1f}%, correctness "
              f"on {100 * s['correctness_agreement'][f]:.1f}%; disagreements by class {s['classes'][f]}")
    for d in s["disagreements"]:
        print(json.dumps({k: d[k] for k in ("doc_id", "filters", "class", "qup_answer", "qup_correct",
                                            "lm_eval_strict-match", "lm_eval_flexible-extract")}))
    print(f"wall: lm-eval {s['timing']['lm_eval_s']:.0f} s, qup {s['timing']['qup_s']:.0f} s; details in {args.out}")


if __name__ == "__main__":
    main()
