"""Per-variant diagnostics: a table with 95% intervals, its markdown, and the PNG plots
(reward vs NLL per row coloured by variant; per-variant means with intervals).

Example:
    >>> from datasets import Dataset
    >>> t = variant_table({"rft": Dataset.from_dict({"problem_id": ["a", "b"], "reward": [0.2, 0.4],
    ...                                              "nll": [1.0, 1.0], "nll_tokens": [3, 1]})})
    >>> t["rft"]["reward"]["mean"], t["rft"]["rows"], t["rft"]["perplexity"]
    (0.3, 2, 2.718)
"""
from __future__ import annotations

import math
from pathlib import Path

from .columns import get, predictors, shown


def markdown_table(header: list[str], rows: list[list], right: int = 1) -> list[str]:
    """The one table renderer: markdown lines, the first ``right`` columns left-aligned, the
    rest right-aligned (numbers); a None cell is "—".

    >>> markdown_table(["variant", "rows"], [["rft", 2], ["raw", None]])
    ['| variant | rows |', '|---|---:|', '| rft | 2 |', '| raw | — |']
    """
    cell = lambda x: "—" if x is None else str(x)   # noqa: E731
    return ["| " + " | ".join(map(cell, header)) + " |",
            "|" + "---|" * right + "---:|" * (len(header) - right),
            *("| " + " | ".join(map(cell, r)) + " |" for r in rows)]


def mean_ci(values: list[float], z: float = 1.96) -> dict:
    """Mean, normal 95% interval and count of the non-null ``values`` (null mean when empty)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    half = z * sd / math.sqrt(len(xs))
    return {"mean": round(m, 4), "lo": round(m - half, 4), "hi": round(m + half, 4), "n": len(xs)}


def variant_table(datasets: dict) -> dict[str, dict]:
    """{variant: rows, problems, reward_kind, per shown diagnostic column a :func:`mean_ci`, and
    the perplexity exp(token-weighted mean NLL)} for scored datasets ({variant: Dataset})."""
    out = {}
    for name, ds in datasets.items():
        cols = set(ds.column_names)
        row = {"rows": len(ds), "problems": len(set(ds["problem_id"])) if "problem_id" in cols else 0,
               "reward_kind": next((k for k in ds["reward_kind"] if k), "") if "reward_kind" in cols else ""}
        for c in shown():
            row[c.name] = mean_ci(ds[c.name] if c.name in cols else [])
        ppl = None
        if {"nll", "nll_tokens"} <= cols:
            pairs = [(n, t) for n, t in zip(ds["nll"], ds["nll_tokens"]) if n is not None and t]
            tokens = sum(t for _, t in pairs)
            ppl = round(math.exp(sum(n * t for n, t in pairs) / tokens), 3) if tokens else None
        row["perplexity"] = ppl
        out[name] = row
    return out


def cell(s: dict | None) -> str:
    """A :func:`mean_ci` as ``mean (lo–hi)``; "—" when nothing was measured."""
    if not s or s["mean"] is None:
        return "—"
    return f"{s['mean']:.3f} ({s['lo']:.3f}–{s['hi']:.3f})"


def header(table: dict[str, dict]) -> list[str]:
    """The diagnostic columns' labels (the reward's with its kind), perplexity after NLL."""
    kinds = sorted({t.get("reward_kind") for t in table.values() if t.get("reward_kind")})
    out = []
    for c in shown():
        out.append(f"{c.label} ({', '.join(kinds)})" if c.name == "reward" and kinds else c.label)
        if c.name == "nll":
            out.append("perplexity")
    return out


def cells(t: dict, fmt=cell) -> list[str]:
    """One variant's cells under :func:`header` (``fmt`` renders a :func:`mean_ci`)."""
    out = []
    for c in shown():
        out.append(fmt(t.get(c.name)))
        if c.name == "nll":
            out.append("—" if t.get("perplexity") is None else f"{t['perplexity']:.2f}")
    return out


def table_markdown(table: dict[str, dict]) -> list[str]:
    """The table as markdown lines: mean (95% interval) per diagnostic."""
    return markdown_table(["variant", "rows", "problems", *header(table)],
                          [[name, t["rows"], t["problems"], *cells(t)] for name, t in table.items()])


def plot(datasets: dict, table: dict[str, dict], path: str | Path) -> Path | None:
    """Reward vs NLL per row, coloured by variant, and per-variant mean bars with 95% intervals
    of every column with a direction (:func:`.columns.predictors`); None when nothing was scored."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [c.name for c in predictors()]
    names = [n for n in table if any(table[n][c]["n"] for c in bars)]
    if not names:
        return None
    cols = min(3, 1 + len(bars))                       # three panels a row
    rows = -(-(1 + len(bars)) // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.8 * rows), squeeze=False)
    axes = list(grid.flat)
    for ax in axes[1 + len(bars):]:
        ax.set_visible(False)
    colors = plt.get_cmap("tab10")
    for i, name in enumerate(names):
        ds = datasets[name]
        pts = [(r, n) for r, n in zip(*(ds[c] if c in ds.column_names else [None] * len(ds)
                                         for c in ("reward", "nll"))) if r is not None and n is not None]
        if pts:
            axes[0].scatter([p[1] for p in pts], [p[0] for p in pts], s=14, alpha=0.6,
                            color=colors(i), label=name)
    axes[0].set_xlabel("learner NLL (adaptation cost)")
    axes[0].set_ylabel("reward (perceived quality)")
    axes[0].legend(fontsize=8)
    axes[0].set_title("per row")
    for ax, col in zip(axes[1:], bars):
        stats = [table[n][col] for n in names]
        means = [s["mean"] or 0 for s in stats]
        err = [[m - (s["lo"] if s["lo"] is not None else m) for m, s in zip(means, stats)],
               [(s["hi"] if s["hi"] is not None else m) - m for m, s in zip(means, stats)]]
        ax.bar(names, means, yerr=err, capsize=4, color=[colors(i) for i in range(len(names))])
        ax.set_title(f"mean {get(col).label} (95% interval)")
        ax.tick_params(axis="x", rotation=30, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
