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


# Per-stage rates on 2 cores of this AVX2 machine (x86-64 EPYC, fma/avx2, no avx512), vLLM
# binding both cores. "measured": by the named benchmark or run; "scaled": from a measured one by
# parameter count; "assumed": to be replaced by the run's own figure.
RATES = {
    "slm_tok_s": (210.0, "measured: SmolLM2-135M fp32 sampling k=4 on vLLM (benchmarks/vllm_engine.py)"),
    "oracle_tok_s": (74.0, "measured: Qwen2.5-Coder-0.5B fp32 sampling k=4 on vLLM (benchmarks/vllm_engine.py)"),
    "oracle_prefill_tok_s": (240.0, "scaled: SmolLM2's 258 tok/s vLLM scoring x 135M / 494M x 3.5 "
                                    "(a bigger model runs nearer the bound: 52% vs 31%)"),
    "judge_prefill_tok_s": (60.0, "scaled: oracle_prefill_tok_s x 494M / 1.54B x 0.8"),
    "learner_prefill_tok_s": (258.0, "measured: SmolLM2 NLL scoring on vLLM (benchmarks/vllm_engine.py)"),
    "train_s_per_row_epoch": (1.6, "measured: cpu-demo LoRA SFT of SmolLM2, 12-13 s per step of 8 rows"),
    "train_start_s": (25.0, "model load + trainer set-up per training"),
    "p_correct": (0.0265, "measured: cpu-study's first run, 4,635 SmolLM2 traces (k=5) on decontaminated "
                          "MAWPS: correct and complete (3.6% correct, 27% of those cut at the token limit)"),
    "p_concentration": (15.1, "measured: the same run's per-problem counts fit a beta-binomial with "
                              "a + b = 0.40 + 14.7 (problems differ: fewer rft rows than a binomial)"),
    "oracle_p_correct": (0.56, "measured: cpu-study, oracle_synth 521 verified complete of 927 problems"),
    "refine_p_correct": (0.193, "measured: cpu-study, oracle_refine 179 of 927 first traces (the Oracle "
                                "keeps the SLM's mistake)"),
    "slm_trace_tok": (126.0, "measured: cpu-study's first run, 4,635 traces (41% cut at 160 tokens)"),
    "oracle_tok": (120.0, "assumed: Oracle solution/rewrite length on MAWPS (cap 192)"),
    "oracle_prompt_tok": (250.0, "assumed: refine/SAR prompt (template + question + SLM trace)"),
    "judge_row_tok": (250.0, "assumed: judge template + question + completion"),
    "eval_tok": (110.0, "assumed: greedy answer length on MAWPS/SVAMP (cap 160)"),
    "peak_gflops": (170.0, "measured: fp32 matmul, 2 threads (benchmarks/vllm_engine.py: 607-676 tok/s "
                           "bound x 2 x 135M)"),
    "slm_params_m": (135.0, "SmolLM2-135M"),
    "row_tok": (220.0, "assumed: training row (chat template + prompt + trace)"),
    "eval_prompt_tok": (90.0, "assumed: evaluation prompt (chat template + prompt + question)"),
    "engine_start_s": (130.0, "measured: vLLM engine start on CPU, 88-130 s (benchmarks/vllm_engine.py)"),
    "reload_s": (5.0, "assumed: a merged SmolLM2 (540 MB fp32) loaded into its base's engine in place"),
}


def plan(recipe: str, rates: dict[str, float], psis: list[float]) -> None:
    """Print power and wall time of ``recipe``'s study (see module doc)."""
    from toolkit.study import load_study
    from toolkit.run import load_recipe
    from toolkit.sources import load_problems
    study, run_over = load_study(recipe)
    r = {k: v for k, (v, _) in RATES.items()} | rates
    base = load_recipe(recipe)
    opts = base.variant_options
    from toolkit.run import _decontaminate
    n_train = load_problems(base.train_problems).num_rows
    n_train -= _decontaminate(base, study.benchmarks)["dropped"]      # what the run leaves out
    k = base.sample.k
    sizes = {f"{b.source}/{b.split}": load_problems(b).num_rows for b in [base.eval_problems, *study.benchmarks]}
    trained, seeds = run_over["variants"], len(study.seeds)
    cap, p = opts["rft"].max_per_problem, r["p_correct"]
    rft_rows = n_train * sum(min(j, cap) * _beta_binomial(j, k, p, r["p_concentration"]) for j in range(k + 1))
    print(f"recipe {recipe}: {n_train} training problems after decontamination x k={k}; {len(trained)} arms x {seeds} seeds; "
          f"max_rows {base.max_rows}")
    print(f"expected rft rows: {rft_rows:.0f} (p_correct {p}, concentration {r['p_concentration']:g}, "
          f"cap {cap}/problem; target >= 300)")
    for name, n in sizes.items():
        line = ", ".join(f"ψ={psi:.0%}: {_pts(detectable(psi, n))} per seed, "
                         f"{_pts(detectable(psi, n * seeds))} pooled" for psi in psis)
        print(f"power {name} ({n} problems): smallest difference at 80% power, α=0.05: {line}")
    hours = _hours(r, base, opts, n_train, k, rft_rows, trained, seeds, sum(sizes.values()))
    total = 0.0
    for name, sec in hours.items():
        total += sec
        print(f"  {name:<64}{sec / 3600:6.2f} h")
    print(f"  {'total (2 cores)':<64}{total / 3600:6.2f} h   (target <= 8 h)")
    arms = len(trained) * seeds
    n = r["slm_params_m"] * 1e6
    train_flop = arms * (base.max_rows or 0) * base.train.epochs * r["row_tok"] * 4 * n   # LoRA: fwd + input grads
    eval_flop = (arms + 1) * sum(sizes.values()) * (r["eval_tok"] + r["eval_prompt_tok"]) * 2 * n
    print(f"  floor: train + evaluate alone are {(train_flop + eval_flop) / 1e15:.0f} PFLOP = "
          f"{(train_flop + eval_flop) / (r['peak_gflops'] * 1e9) / 3600:.1f} h at 100% of the cores' "
          f"measured {r['peak_gflops']:g} GFLOP/s")
    for name, (value, why) in RATES.items():
        print(f"    rate {name} = {r[name]:g}  [{why if name not in rates else 'given'}]")


def _hours(r, base, opts, n_train, k, rft_rows, trained, seeds, n_eval) -> dict[str, float]:
    """Seconds per stage of a study (see :func:`plan`)."""
    per = lambda v: min(k, opts[v].traces_per_problem or k)     # noqa: E731  traces the Oracle takes
    cap = base.max_rows or float("inf")
    rows = {"rft": min(rft_rows, cap), "oracle_synth": min(n_train * r["oracle_p_correct"], cap),
            "oracle_refine": min(n_train * per("oracle_refine") * r["refine_p_correct"], cap),
            "style_aligned": min(rft_rows + n_train * per("style_aligned") * 0.3, cap)}
    rows.update({v: min(n_train * 0.5, cap) for v in trained if v not in rows})
    judged = sum(rows[v] for v in ("rft", "oracle_synth", "oracle_refine", "style_aligned"))
    judged += 0 if "self" in base.unscored else n_train * k
    oracle = lambda n: n * (r["oracle_prompt_tok"] / r["oracle_prefill_tok_s"] + r["oracle_tok"] / r["oracle_tok_s"])  # noqa: E731
    sar = opts["style_aligned"]
    return {
        "sample (SLM)": n_train * k * r["slm_trace_tok"] / r["slm_tok_s"],
        "oracle_synth": oracle(n_train),
        "oracle_refine": oracle(n_train * per("oracle_refine")),
        "style_aligned (locate + fix a step, then SLM continuations)":
            oracle(n_train * per("style_aligned")) * 0.6
            + n_train * per("style_aligned") * sar.continuations * sar.max_new_tokens / r["slm_tok_s"],
        "score: judge": judged * r["judge_row_tok"] / r["judge_prefill_tok_s"],
        "score: learner (ranked + IFD's answer-only pass)":
            judged * (r["judge_row_tok"] + r["slm_trace_tok"]) / r["learner_prefill_tok_s"],
        "train": sum(seeds * (rows[v] * base.train.epochs * r["train_s_per_row_epoch"] + r["train_start_s"])
                     for v in trained),
        "evaluate": (len(trained) * seeds + 1) * n_eval * r["eval_tok"] / r["slm_tok_s"],
        "engine starts (one per role and stage; adapters merged on CPU are reloaded in place)":
            r["engine_start_s"] * 7 + r["reload_s"] * (len(trained) * seeds + 1),
    }


def _beta_binomial(j: int, k: int, p: float, concentration: float) -> float:
    """P(j of k traces correct) when a problem's accuracy is Beta(p·c, (1-p)·c)-distributed
    (c = ``concentration``; c → ∞ is the binomial)."""
    if math.isinf(concentration) or p in (0.0, 1.0):
        return math.comb(k, j) * p ** j * (1 - p) ** (k - j)
    a, b = p * concentration, (1 - p) * concentration
    return math.comb(k, j) * math.exp(math.lgamma(j + a) + math.lgamma(k - j + b) - math.lgamma(k + a + b)
                                      + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b))


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
