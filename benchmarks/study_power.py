"""How many held-out problems a study needs: McNemar power from a finished run's own evaluations.

Reads ``<run>/eval/<variant>/`` (greedy pass@1 per problem), measures how often each variant and
the baseline disagree on a problem (the discordant share ψ), and prints the problems needed per
seed to detect 5 and 10 accuracy points at 80% power (Connor 1987), next to what the run used,
and the smallest difference the run's own size detects.

    .venv/bin/python benchmarks/study_power.py runs/cpu-paradox --baseline rft
"""
import argparse
from pathlib import Path

from toolkit.io import load
from toolkit.study.stats import detectable, mcnemar, sample_size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--baseline", default="rft")
    args = ap.parse_args()
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
