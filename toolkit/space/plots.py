"""The paradox plot: training-data reward vs held-out accuracy, and NLL vs accuracy, one point per variant.

Example:
    >>> from toolkit.space.leaderboard import Row
    >>> fig, note = paradox_plot([Row("rft", "mawps", 0.1, 2, 20, 0.03, 0.3, 1, 0.8, None, 0.5)])
    >>> fig is not None, note
    (True, '')
    >>> paradox_plot([Row("base")])[1]
    'Nothing to plot yet: no variant has both a held-out accuracy and a training reward or NLL published.'
"""
from __future__ import annotations

from .leaderboard import BASE, Row


def paradox_plot(rows: list[Row]):
    """``(matplotlib figure or None, message)``; the message says what is missing."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if r.variant != BASE and r.accuracy is not None]
    axes_def = [("reward", "reward_ci", "training-data reward (perceived quality)"),
                ("nll", "nll_ci", "training-data NLL under the SLM (adaptation cost)")]
    usable = [d for d in axes_def if any(getattr(r, d[0]) is not None for r in points)]
    if not usable:
        return None, ("Nothing to plot yet: no variant has both a held-out accuracy and a training "
                      "reward or NLL published.")
    fig, axes = plt.subplots(1, len(usable), figsize=(5.2 * len(usable), 4), squeeze=False)
    bases = [r for r in rows if r.variant == BASE and r.accuracy is not None]
    for ax, (key, ci_key, label) in zip(axes[0], usable):
        for i, r in enumerate(p for p in points if getattr(p, key) is not None):
            x, ci = getattr(r, key), getattr(r, ci_key)
            xerr = [[x - ci[0]], [ci[1] - x]] if ci else None
            yerr = [[r.accuracy - r.ci_low], [r.ci_high - r.accuracy]] if r.ci_low is not None else None
            ax.errorbar(x, r.accuracy, xerr=xerr, yerr=yerr, fmt="o", capsize=3, color=f"C{i}",
                        label=r.variant + (f" · {r.benchmark}" if r.benchmark else ""))
        for b in bases:
            ax.axhline(b.accuracy, ls="--", color="grey", lw=1, label=f"base · {b.benchmark}")
        ax.set_xlabel(label)
        ax.set_ylabel("held-out accuracy (pass@1)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    missing = [d[0] for d in axes_def if d not in usable]
    fig.suptitle("The Quality-Utility Paradox: higher reward does not mean a better SLM")
    fig.tight_layout()
    plt.close(fig)
    note = f"No training {' or '.join(missing)} published for these variants." if missing else ""
    return fig, note
