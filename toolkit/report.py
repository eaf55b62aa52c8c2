"""``report``: a markdown table and a PNG plot comparing the base model with each trained variant."""
from __future__ import annotations

from pathlib import Path

from .stats import wilson
from .variants import docs as variant_docs


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _num(x) -> str:
    return "—" if x is None else f"{x:.2f}"


def write_report(run_dir: str | Path, summary: dict) -> Path:
    """Write ``report.md`` and ``report.png`` into ``run_dir`` from a run summary; return the .md."""
    from .decontaminate import sentence
    from .diagnostics.tables import markdown_table
    run_dir = Path(run_dir)
    evals = summary["evaluations"]  # name -> metrics (base first)
    data = summary.get("data", {})
    accuracy = []
    for name, m in evals.items():
        lo, hi = (m["ci_low"], m["ci_high"]) if m.get("ci_low") is not None else wilson(m["correct"], m["total"])
        accuracy.append(["base" if name == "base" else "base + LoRA", "—" if name == "base" else name,
                         "—" if name == "base" else data.get(name, {}).get("rows", "—"), _pct(m["accuracy"]),
                         f"{_pct(lo)}–{_pct(hi)}", f"{m['correct']} / {m['total']}",
                         f"{m['stopped']} / {m['total']}", f"{m['mean_completion_tokens']:.0f}"])
    docs = variant_docs()
    variants = [[name, docs.get(name, ""), d["rows"], d["problems"], _pct(d["correct_rate"]),
                 f"{d['mean_completion_tokens']:.0f}", _num(d.get("mean_edit_distance")),
                 _num(d.get("oracle_token_share")),
                 ", ".join(f"{k}: {n}" for k, n in sorted(d.get("counts", {}).items()) if n) or "—"]
                for name, d in data.items()]
    lines = [f"# QUP run `{summary['name']}`", "",
             f"Model: `{summary['model']}`. Held-out problems: `{summary['eval_source']}` "
             f"({next(iter(evals.values())).get('problems', next(iter(evals.values()))['total'])} problems, "
             f"{next(iter(evals.values())).get('metric', 'pass@1 (greedy)')}).", "",
             *([sentence(summary["decontamination"]), ""] if summary.get("decontamination") else []),
             "## Accuracy on the same held-out problems", "",
             *markdown_table(["model", "trained on", "train rows", "accuracy", "95% interval", "correct / total",
                              "stopped", "mean tokens"], accuracy, right=2),
             "", *protocol_lines(evals),
             "", "## Training data variants", "",
             *markdown_table(["variant", "what", "rows", "problems covered", "correct rate", "mean tokens",
                              "edit distance", "Oracle token share", "skipped or rejected"], variants, right=2)]
    if summary.get("diagnostics"):
        from .diagnostics.columns import shown
        from .diagnostics.tables import table_markdown
        lines += ["", "## Before training: perceived quality, adaptation cost, drift", "",
                  "Mean (95% interval) per variant of each diagnostic column:", "",
                  *(f"- {c.label}: {c.doc}" for c in shown()), "", *table_markdown(summary["diagnostics"])]
        if (run_dir / "diagnostics.png").is_file():
            lines += ["", "![diagnostics](diagnostics.png)"]
    if summary.get("published"):
        lines += ["", "## Published", "", *markdown_table(
            ["what", "repo", "revision"], [[p["what"], f"`{p['repo']}`", f"`{p['revision']}`"]
                                           for p in summary["published"]], right=3)]
    lines += ["", "![accuracy](report.png)", ""]
    md = run_dir / "report.md"
    md.write_text("\n".join(lines))
    _plot(evals, run_dir / "report.png")
    return md


def protocol_lines(evals: dict) -> list[str]:
    """The evaluation protocol(s) of a run's scores; a warning when two evaluations differ.

    >>> protocol_lines({"base": {"protocol": {"protocol_id": "a", "prompt_id": "p@1", "shots": 0}},
    ...                 "rft": {"protocol": {"protocol_id": "b", "prompt_id": "p@1", "shots": 5}}})[2]
    '**Not one column**: the evaluations differ in shots: 0 vs 5.'
    """
    from .protocol import differences, notes
    recs = {n: m.get("protocol") for n, m in evals.items()}
    known = {n: r for n, r in recs.items() if r}
    out = ["## Evaluation protocol", ""]
    if not known:
        return out + ["Not recorded (evaluated before protocols were kept).", ""]
    first = next(iter(known.values()))
    diffs = sorted({d for r in known.values() for d in differences(first, r)})
    if diffs:
        out += [f"**Not one column**: the evaluations differ in {'; '.join(diffs)}.", ""]
    for pid in dict.fromkeys(r["protocol_id"] for r in known.values()):
        rec = next(r for r in known.values() if r["protocol_id"] == pid)
        names = ", ".join(n for n, r in known.items() if r["protocol_id"] == pid)
        out.append(f"- `{pid}` ({names}): {notes(rec)}")
    return out + [""]


def _plot(evals: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(evals)
    acc = [100 * evals[n]["accuracy"] for n in names]
    ci = [wilson(evals[n]["correct"], evals[n]["total"]) for n in names]
    err = [[a - 100 * lo for a, (lo, _) in zip(acc, ci)], [100 * hi - a for a, (_, hi) in zip(acc, ci)]]
    fig, ax = plt.subplots(figsize=(2.4 + 1.2 * len(names), 3.2))
    bars = ax.bar(names, acc, yerr=err, capsize=4, color=["#888"] + ["#f4a300"] * (len(names) - 1))
    for b, n in zip(bars, names):
        ax.annotate(f"{evals[n]['correct']}/{evals[n]['total']}", (b.get_x() + b.get_width() / 2,
                    b.get_height()), ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("pass@1 (%)")
    ax.set_ylim(0, max([100 * hi for _, hi in ci] + [1]) * 1.15)
    ax.set_title("held-out pass@1 (95% Wilson interval)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
