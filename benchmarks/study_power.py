"""How many held-out problems a study needs: McNemar power from a finished run's own evaluations.

Reads ``<run>/eval/<variant>/`` (greedy pass@1 per problem), measures how often each variant and
the baseline disagree on a problem (the discordant share ψ), and prints the problems needed per
seed to detect 5 and 10 accuracy points at 80% power (Connor 1987), next to what the run used,
and the smallest difference the run's own size detects.

    .venv/bin/python benchmarks/study_power.py runs/cpu-paradox --baseline rft

Before a run, ``--plan RECIPE`` sizes a study from its recipe: the smallest difference McNemar
detects per benchmark at an assumed discordant share ψ (per seed and pooled over seeds), the
expected training rows of the smallest variant (rft), and the wall time per stage from per-stage
rates (``--rate NAME=VALUE`` overrides one; each default says where it comes from):

    .venv/bin/python benchmarks/study_power.py --plan cpu-study
"""
import argparse
import math
from pathlib import Path

from toolkit.io import load
from toolkit.study.stats import detectable, mcnemar, sample_size


# Per-stage rates on 2 cores of this AVX2 machine (x86-64 EPYC, fma/avx2, no avx512). "measured":
# by the named benchmark or run; "scaled": derived from a measured one by parameter count.
RATES = {
    "slm_tok_s": (105.0, "measured: SmolLM2-135M fp32 sampling on vLLM (benchmarks/vllm_engine.py)"),
    "oracle_tok_s": (29.0, "scaled: slm_tok_s x 135M / 494M parameters (Qwen2.5-Coder-0.5B)"),
    "judge_prefill_tok_s": (37.0, "scaled: 286 tok/s SmolLM2 NLL prefill (README, nll_throughput) "
                                  "x 135M / 1.54B x 1.46 (vLLM/transformers decode ratio)"),
    "learner_prefill_tok_s": (418.0, "measured 286 tok/s NLL prefill (transformers) x 1.46 for vLLM"),
    "learner_passes": (3.0, "NLL + RSR/GRAPE (ranked) + IFD's question-free pass"),
    "train_s_per_row_epoch": (4.1, "measured: cpu-paradox study, 18 trainings 58.6 min at ~20 rows x 2 "
                                   "epochs, ~25 s start each"),
    "train_start_s": (25.0, "model load + trainer set-up per training"),
    "p_correct": (0.092, "measured: SmolLM2 samples on MAWPS, 17.5% of problems with a correct trace at k=2"),
    "oracle_p_correct": (0.35, "assumed: Qwen2.5-Coder-0.5B on MAWPS (9/48 on GSM8K test, README)"),
    "slm_trace_tok": (116.0, "measured: cpu-demo, 5,587 tokens / 48 MAWPS traces"),
    "oracle_tok": (150.0, "assumed: Oracle solution/rewrite length (cap 192)"),
    "judge_row_tok": (330.0, "assumed: judge template + question + completion"),
    "engine_start_s": (110.0, "measured: vLLM engine start on CPU, upper end (README), per model per stage"),
}


def plan(recipe: str, rates: dict[str, float], psis: list[float]) -> None:
    """Print power and wall time of ``recipe``'s study (see module doc)."""
    from toolkit.study import load_study
    from toolkit.variants.selected import CRITERIA  # noqa: F401  (criteria validated by load_study)
    from toolkit.run import load_recipe
    from toolkit.sources import load_problems
    study, run_over = load_study(recipe)
    r = {k: v for k, (v, _) in RATES.items()} | rates
    base = load_recipe(recipe)
    opts = base.variant_options
    n_train = load_problems(base.train_problems).num_rows
    k = base.sample.k
    benches = [base.eval_problems, *study.benchmarks]
    sizes = {f"{b.source}/{b.split}": load_problems(b).num_rows for b in benches}
    trained = run_over["variants"]
    seeds = len(study.seeds)
    # the smallest variant: rft, min(correct traces, cap) per problem under a binomial per trace
    cap, p = opts["rft"].max_per_problem, r["p_correct"]
    per_problem = sum(min(j, cap) * math.comb(k, j) * p ** j * (1 - p) ** (k - j) for j in range(k + 1))
    rft_rows = n_train * per_problem
    print(f"recipe {recipe}: {n_train} training problems x k={k}; variants {trained}; {seeds} seeds")
    print(f"expected rft rows: {rft_rows:.0f} (p_correct {p}, cap {cap}/problem; target >= 300)")
    for name, n in sizes.items():
        line = ", ".join(f"ψ={psi:.0%}: {_pts(detectable(psi, n))} per seed, "
                         f"{_pts(detectable(psi, n * seeds))} pooled" for psi in psis)
        print(f"power {name} ({n} problems): smallest difference at 80% power, α=0.05: {line}")
    traces = n_train * k
    wrong = traces * (1 - p)
    rows = {"rft": rft_rows, "oracle_synth": n_train * r["oracle_p_correct"],
            "oracle_refine": n_train * min(2, k * r["oracle_p_correct"]), "style_aligned": rft_rows * 1.3}
    rows.update({v: n_train * 0.5 for v in trained if v.startswith("selected")})
    scored = traces + sum(v for name, v in rows.items() if not name.startswith("selected"))
    eval_tok = {"gsm8k": 190.0, "math500": 240.0}     # assumed mean greedy completion tokens
    evals = sum(n * eval_tok.get(Path(name.split("/")[0]).name, r["slm_trace_tok"]) for name, n in sizes.items())
    hours = {
        "sample (SLM)": traces * r["slm_trace_tok"] / r["slm_tok_s"],
        "oracle_synth": n_train * r["oracle_tok"] / r["oracle_tok_s"],
        "oracle_refine (every trace)": traces * r["oracle_tok"] / r["oracle_tok_s"],
        "style_aligned (prefix: Oracle step + 2 SLM continuations per wrong trace)":
            wrong * (60 / r["oracle_tok_s"] + 2 * 96 / r["slm_tok_s"]),
        "score: judge": scored * r["judge_row_tok"] / r["judge_prefill_tok_s"],
        "score: learner (3 passes)": scored * r["judge_row_tok"] * r["learner_passes"] / r["learner_prefill_tok_s"],
        "train": sum(seeds * (rows[v] * base.train.epochs * r["train_s_per_row_epoch"] + r["train_start_s"])
                     for v in trained if v in rows),
        "evaluate": (len(trained) * seeds + 1) * evals / r["slm_tok_s"],
        "engine starts": r["engine_start_s"] * (6 + 2 * (len(trained) * seeds + 1)),
    }
    total = 0.0
    for name, sec in hours.items():
        total += sec
        print(f"  {name:<78}{sec / 3600:6.2f} h")
    print(f"  {'total (2 cores)':<78}{total / 3600:6.2f} h   (target <= 8 h)")
    for name, (value, why) in RATES.items():
        print(f"    rate {name} = {r[name]:g}  [{why if name not in rates else 'given'}]")


def _pts(d) -> str:
    return f"{100 * d:.1f} pts" if d else "none"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", nargs="?")
    ap.add_argument("--baseline", default="rft")
    ap.add_argument("--plan", metavar="RECIPE", help="size a study before running it (see module doc)")
    ap.add_argument("--rate", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--psi", type=float, action="append", help="assumed discordant shares (default 5%%, 7.5%%)")
    args = ap.parse_args()
    if args.plan:
        rates = {k: float(v) for k, v in (x.split("=", 1) for x in args.rate)}
        return plan(args.plan, rates, args.psi or [0.05, 0.075])
    if not args.run_dir:
        ap.error("give a run dir, or --plan RECIPE")
    evals = {d.name: dict(zip(*(lambda ds: (ds["problem_id"], ds["correct"]))(load(d))))
             for d in sorted(Path(args.run_dir, "eval").iterdir()) if (d / "data").exists() or (d / "metrics.json").exists()}
    base = evals[args.baseline]
    print(f"{'variant':<16}{'acc':>8}{'b/c vs ' + args.baseline:>14}{'ψ':>8}{'p':>8}{'n(5pt)':>9}{'n(10pt)':>9}")
    psis = []
    for name, out in evals.items():
        ids = sorted(set(out) & set(base))
        b = sum(out[i] and not base[i] for i in ids)
        c = sum(base[i] and not out[i] for i in ids)
        psi = (b + c) / len(ids)
        if name != args.baseline:
            psis.append(psi)
        print(f"{name:<16}{sum(out.values()) / len(out):>8.3f}{f'{b}/{c}':>14}{psi:>8.3f}"
              f"{mcnemar(b, c)['p']:>8.3f}{str(sample_size(psi, 0.05)):>9}{str(sample_size(psi, 0.10)):>9}")
    psi = sum(psis) / len(psis)
    print(f"\nmean ψ = {psi:.3f} over {len(psis)} variants; problems used per seed: {len(base)}")
    print(f"needed per seed at 80% power, α=0.05: 5 pts → {sample_size(psi, 0.05)}, 10 pts → {sample_size(psi, 0.10)}")
    d = detectable(psi, len(base))
    print(f"detectable at {len(base)} problems: " + (f"{100 * d:.1f} pts" if d else
          f"none (a difference is at most ψ = {100 * psi:.1f} pts, and that needs {sample_size(psi, psi * 0.999)})"))


if __name__ == "__main__":
    main()
