"""The study's report: the paradox table, paired comparisons against the baseline, the
prediction of utility from pre-training diagnostics (Spearman), a power estimate, and the plot.

Accuracy of a variant is the mean over its seeds; its interval resamples problems (all seeds of a
problem together), since seeds share the same held-out problems. Paired comparisons use the same
problems and seeds: McNemar's exact test on the discordant pairs (pooled over seeds) and the
paired bootstrap of the accuracy difference.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..diagnostics.columns import predictors
from ..diagnostics.tables import markdown_table
from .stats import detectable, mcnemar, paired_bootstrap, sample_size, spearman

log = logging.getLogger(__name__)


def _predictors() -> dict[str, tuple[str, int]]:
    """{column: (what it says, sign)} of every diagnostic column with a direction (the registry's)."""
    return {c.name: (f"training-data {c.label} ({'higher' if c.higher_is_better else 'lower'} = better)",
                     1 if c.higher_is_better else -1) for c in predictors()}


def _per_problem(cells: list[dict], bench: int) -> dict[str, dict[int, dict[str, bool]]]:
    """variant -> seed -> {problem id: correct} on benchmark number ``bench``."""
    out: dict = {}
    for c in cells:
        out.setdefault(c["variant"], {})[c["seed"]] = c["outcomes"][bench]
    return out


def _by_problem(seeds: dict[int, dict[str, bool]]) -> dict[str, list[bool]]:
    out: dict[str, list[bool]] = {}
    for outcome in seeds.values():
        for pid, ok in outcome.items():
            out.setdefault(pid, []).append(bool(ok))
    return out


def _paired(a: dict[int, dict], b: dict[int, dict], n_boot: int) -> dict:
    """a vs b: discordant pairs pooled over the seeds both have. The base model's one run (seed
    -1) pairs with every seed in the bootstrap (a per-problem mean) but only with the first in
    McNemar's counts, which would otherwise count each of its problems once per seed."""
    bc = [0, 0]
    pairs = 0
    a_by, b_by = {}, {}
    for i, seed in enumerate(sorted((set(a) | set(b)) - {-1}) or [-1]):
        out_a, out_b = a.get(seed, a.get(-1)), b.get(seed, b.get(-1))
        if out_a is None or out_b is None:
            continue
        count = i == 0 or not ({-1} & (set(a) | set(b)))
        for pid, ok in out_a.items():
            if pid in out_b:
                if count:
                    pairs += 1
                    bc[0] += bool(ok) and not out_b[pid]
                    bc[1] += bool(out_b[pid]) and not ok
                a_by.setdefault(pid, []).append(bool(ok))
                b_by.setdefault(pid, []).append(bool(out_b[pid]))
    return {**mcnemar(*bc), "pairs": pairs, "discordant": (bc[0] + bc[1]) / pairs if pairs else None,
            "bootstrap": paired_bootstrap(a_by, b_by, n_boot)}


def analyse(study, cells: list[dict], rows: list[dict], bench: int = 0) -> dict:
    """Per-variant accuracy, data diagnostics, paired tests, prediction and power on one benchmark."""
    data = {r["variant"]: r for r in rows}     # the training data's figures, from the results rows
    outcomes = _per_problem(cells, bench)
    table = {}
    for v, seeds in outcomes.items():
        by = _by_problem(seeds)
        accs = [sum(o.values()) / len(o) for o in seeds.values() if o]
        boot = paired_bootstrap(by, {pid: [False] for pid in by}, study.bootstrap)
        row = {"seeds": sorted(seeds), "accuracy": sum(accs) / len(accs) if accs else None,
               "seed_accuracies": accs, "lo": boot["lo"], "hi": boot["hi"], "problems": len(by),
               "correct": sum(sum(o.values()) for o in seeds.values()),
               "total": sum(len(o) for o in seeds.values()), "rows": 0, **dict.fromkeys(_predictors())}
        if v != "base":
            row.update(rows=data[v]["train_rows"], **{c: data[v].get(c) for c in _predictors()})
        if v != study.baseline and study.baseline in outcomes:
            row["vs_baseline"] = _paired(seeds, outcomes[study.baseline], study.bootstrap)
        table[v] = row
    trained = [v for v in table if v != "base" and table[v]["accuracy"] is not None]
    prediction = {}
    for col, (_, sign) in _predictors().items():
        have = [v for v in trained if table[v][col] is not None]
        prediction[col] = {**spearman([sign * table[v][col] for v in have],
                                      [table[v]["accuracy"] for v in have]),
                           "order": sorted(have, key=lambda v: -sign * table[v][col])}
    selected = [v for v in trained if v.startswith("selected")]
    single = [v for v in trained if not v.startswith("selected")]
    selection = None
    if selected and single:
        best_sel = max(selected, key=lambda v: table[v]["accuracy"])
        best_one = max(single, key=lambda v: table[v]["accuracy"])
        selection = {"selected": best_sel, "single": best_one,
                     **_paired(outcomes[best_sel], outcomes[best_one], study.bootstrap)}
    oracle = [v for v in trained if v.startswith("oracle")]
    sar = None
    if "style_aligned" in trained and oracle:      # does SAR restore what the Oracle rewrite lost?
        best_oracle = max(oracle, key=lambda v: table[v]["accuracy"])
        sar = {"oracle": best_oracle, **_paired(outcomes["style_aligned"], outcomes[best_oracle],
                                                study.bootstrap)}
    disc = [table[v]["vs_baseline"]["discordant"] for v in trained
            if "vs_baseline" in table[v] and table[v]["vs_baseline"]["discordant"]]
    psi = sum(disc) / len(disc) if disc else None
    n = max((r["problems"] for r in table.values()), default=0)
    power = {"discordant": psi, "problems": n, "detectable": detectable(psi, n) if psi else None,
             "problems_for": {f"{d:.2f}": sample_size(psi, d) if psi else None for d in (0.05, 0.10)}}
    return {"table": table, "prediction": prediction, "selection": selection, "sar": sar, "power": power}


def _fmt(x, spec=".3f") -> str:
    return "—" if x is None else format(x, spec)


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def markdown(a: dict, study, bench_name: str) -> list[str]:
    t = a["table"]
    cols = [c for c in predictors() if c.name in a["prediction"]]
    body = []
    for v, r in t.items():
        d = r.get("vs_baseline")
        delta = "—" if not d or d["bootstrap"]["diff"] is None else (f"{100 * d['bootstrap']['diff']:+.1f} pts "
                                   f"({100 * d['bootstrap']['lo']:+.1f}…{100 * d['bootstrap']['hi']:+.1f})")
        test = "—" if not d else f"{d['b']}/{d['c']}, p={d['p']:.3f}"
        body.append([v, r["rows"] or "—", *(_fmt(r.get(c.name)) for c in cols),
                     f"{_pct(r['accuracy'])} ({r['correct']}/{r['total']})", f"{_pct(r['lo'])}–{_pct(r['hi'])}",
                     ", ".join(_pct(x) for x in r["seed_accuracies"]), delta, test])
    lines = [f"### {bench_name}", "", *markdown_table(
        ["variant", "rows", *(c.label for c in cols), "accuracy (mean of seeds)", "95% interval", "per seed",
         f"Δ vs {study.baseline} (95% CI)", "McNemar b/c, p"], body)]
    lines += ["", "Accuracy intervals and Δ resample problems with all their seeds (percentile bootstrap); "
              "McNemar pools the discordant pairs of all seeds, which treats repeated problems as "
              "independent (optimistic when seeds agree).", ""]
    lines += ["**Prediction before training** (Spearman ρ between a variant's training-data "
              "diagnostic and its held-out accuracy; exact permutation p):", ""]
    for col, pr in a["prediction"].items():
        lines.append(f"- {_predictors()[col][0]}: ρ = {_fmt(pr['rho'], '+.2f')} (n = {pr['n']}, "
                     f"p = {_fmt(pr['p'], '.3f')}); predicted order {' > '.join(pr['order']) or '—'}")
    s = a["selection"]
    if s:
        b = s["bootstrap"]
        verdict = "beats" if b["lo"] is not None and b["lo"] > 0 else (
            "is worse than" if b["hi"] is not None and b["hi"] < 0 else "does not separate from")
        lines += ["", f"**Compatibility-aware selection**: the best `selected` ({s['selected']}) "
                  f"{verdict} the best single variant ({s['single']}): Δ {100 * b['diff']:+.1f} pts "
                  f"(95% CI {100 * b['lo']:+.1f}…{100 * b['hi']:+.1f}), McNemar p = {s['p']:.3f} "
                  "(the verdict follows the bootstrap: McNemar's pooled seeds make it optimistic)."]
    pw = a["power"]
    if pw["discordant"]:
        need = ", ".join(f"{float(d) * 100:.0f} pts: {n} problems" if n else
                         f"{float(d) * 100:.0f} pts: none (more than the discordant share)"
                         for d, n in pw["problems_for"].items())
        lines += ["", f"**Power**: {100 * pw['discordant']:.1f}% of problem pairs were discordant "
                  f"against {study.baseline}; McNemar at 80% power, α = 0.05 needs per seed: {need}. "
                  + (f"At this study's {pw['problems']} problems it detects "
                     f"{100 * pw['detectable']:.1f} points or more." if pw.get("detectable") else
                     f"At this study's {pw['problems']} problems no difference reaches that power "
                     "(a difference can be at most the discordant share).")]
    return lines


RSR_PUBLISHED = 0.86   # Yang et al. (arXiv 2601.14249): mean Spearman, 5 students x 11 teachers


def _interval(b: dict) -> str:
    return f"{100 * b['diff']:+.1f} pts (95% CI {100 * b['lo']:+.1f}…{100 * b['hi']:+.1f})"


def _separates(b: dict) -> str:
    return "above" if b["lo"] > 0 else "below" if b["hi"] < 0 else "not separated from"


def findings(a: dict, study) -> str:
    """What was found, in words, whichever way the numbers fall (the report, the results card and
    the README say the same): the paradox, SAR, and which pre-training criterion predicts utility."""
    t = a["table"]
    b = t.get(study.baseline, {})
    sep = [v for v, r in t.items() if r.get("vs_baseline") and r["vs_baseline"]["p"] < 0.05]
    oracle = [v for v in t if v.startswith("oracle") and t[v]["reward"] is not None]
    higher = bool(oracle) and b.get("reward") is not None and all(t[v]["reward"] > b["reward"] for v in oracle)
    lower = bool(oracle) and b.get("accuracy") is not None and all(t[v]["accuracy"] < b["accuracy"] for v in oracle)
    if higher and lower:
        verdict = "appears" if any(v in sep for v in oracle) else \
            "points the paper's way, but no Oracle variant differs from the baseline at p < 0.05"
    else:
        verdict = "does not appear"
    words = [
        (f"- Oracle variants ({', '.join(oracle)}): training-data reward "
         f"{'higher' if higher else 'not uniformly higher'} than `{study.baseline}`'s, held-out accuracy "
         f"{'lower' if lower else 'not uniformly lower'}.") if oracle else "- No scored Oracle variant.",
        f"- Accuracy differs from `{study.baseline}` at p < 0.05 (McNemar) for: {', '.join(sep) or 'no variant'}.",
        f"- Verdict: the paradox {verdict} at this scale.",
    ]
    sar = a.get("sar")
    if sar and sar["bootstrap"]["diff"] is not None:
        boot = sar["bootstrap"]
        restores = "restores utility" if boot["lo"] > 0 else "does not restore utility measurably"
        words.append(f"- SAR (`style_aligned`) {restores}: against the best Oracle variant "
                     f"(`{sar['oracle']}`) it is {_separates(boot)} it, Δ {_interval(boot)}.")
    every = "; ".join(f"{c} {_fmt(pr['rho'], '+.2f')} (n = {pr['n']}, p = {_fmt(pr['p'], '.3f')})"
                      for c, pr in a["prediction"].items())
    words.append(f"- Spearman ρ of each pre-training criterion with accuracy (sign: as the criterion "
                 f"predicts; exact permutation p): {every or 'none measured'}.")
    ranked = sorted(((c, pr) for c, pr in a["prediction"].items() if pr["rho"] is not None),
                    key=lambda cp: -cp[1]["rho"])
    rsr = a["prediction"].get("rsr") or {}
    if ranked:
        c, pr = ranked[0]
        words.append(f"- Best predictor of accuracy before training: {c} (ρ = {pr['rho']:+.2f}, "
                     f"p = {_fmt(pr['p'], '.3f')}); RSR here ρ = {_fmt(rsr.get('rho'), '+.2f')} against "
                     f"the published {RSR_PUBLISHED} (Yang et al., 5 students × 11 teachers, long chains "
                     "of thought).")
    else:
        words.append("- No criterion predicts: every ρ is undefined (accuracy or the criterion is constant "
                     "across variants).")
    return "\n".join(words) + "\n"


def compute(run: Path) -> list[str]:
    """What every stage of the run cost, in wall time, from its steps' markers (a step served from
    the cache reports the time it took when it ran; a resumed one adds its killed attempts)."""
    from ..steps import stage_times
    stages = stage_times(run)
    total = sum(s["wall_s"] for s in stages.values())
    body = [[name, s["steps"], s["resumed"] or "", f"{s['wall_s'] / 60:.1f}",
             f"{100 * s['wall_s'] / total:.0f}%" if total else "—"] for name, s in stages.items()]
    return ["**Compute** (wall time per stage; resumed: steps finished over several attempts):", "",
            *markdown_table(["stage", "steps", "resumed", "minutes", "share"], body),
            f"| total | {sum(s['steps'] for s in stages.values())} | | {total / 60:.1f} | |"]


def plot(a: dict, path: Path, title: str) -> Path | None:
    """Each predictor (reward, NLL, ...) vs accuracy, one point per variant with its interval."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = {v: r for v, r in a["table"].items() if v != "base" and r["accuracy"] is not None}
    panels = [(c, label) for c, (label, _) in _predictors().items() if c in a["prediction"]]
    if not t or not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (col, label) in zip(axes[0], panels):
        for i, (v, r) in enumerate(t.items()):   # one colour per variant in both panels, named in the legend
            if r.get(col) is None:
                continue
            acc = 100 * r["accuracy"]
            ax.errorbar(r[col], acc, yerr=[[acc - 100 * r["lo"]], [100 * r["hi"] - acc]], fmt="o", capsize=3,
                        color=f"C{i % 10}", label=v)
        if "base" in a["table"] and a["table"]["base"]["accuracy"] is not None:
            ax.axhline(100 * a["table"]["base"]["accuracy"], ls="--", c="grey", lw=1, label="base")
        if ax is axes[0][-1]:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.set_xlabel(label)
        ax.set_ylabel("held-out accuracy, % (mean of seeds, 95% CI)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(p, study, cells: list[dict], rows: list[dict], out: Path) -> dict:
    """Write ``report.md`` and ``paradox.png`` into ``out``; return the study summary."""
    from ..decontaminate import sentence
    out.mkdir(parents=True, exist_ok=True)
    benches = [p.cfg.eval_problems, *study.benchmarks]
    names = [Path(s.source.rstrip("/")).name for s in benches]
    analyses = {n: analyse(study, cells, rows, i) for i, n in enumerate(names)}
    first = analyses[names[0]]
    png = plot(first, out / "paradox.png", f"{p.cfg.name}: {len(study.seeds)} seeds on {names[0]}")
    lines = [f"# Study {p.cfg.name}", "",
             f"SLM `{p.cfg.model}`; variants {', '.join(p.cfg.variants)}; seeds {study.seeds}; "
             f"benchmarks {', '.join(names)}; paired baseline `{study.baseline}`.", "",
             *([sentence(p.decontamination), ""] if getattr(p, "decontamination", None) else []),
             "## Findings", "", findings(first, study), "## Paradox table", ""]
    for n in names:
        lines += markdown(analyses[n], study, n) + [""]
    if png:
        lines += ["![paradox](paradox.png)", ""]
    from .results import protocol_section
    lines += [*compute(p.run), "", protocol_section(rows)]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    log.info("study report: %s", path)
    return {"name": p.cfg.name, "report": str(path), "plot": str(png) if png else None,
            "rows": len(rows), "analyses": analyses, "findings_md": findings(first, study),
            "seeds": study.seeds, "variants": p.cfg.variants,
            "decontamination": getattr(p, "decontamination", None)}
