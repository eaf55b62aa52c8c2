"""The leaderboard: one row per variant (and benchmark), read from what was published, not recomputed.

Source 1, when present: the study's results dataset (``toolkit.schema.RESULTS``, one row per
SLM × variant × seed × benchmark): seeds are aggregated (mean accuracy, pooled counts, mean
training reward/NLL). The 95% interval is Wilson's for the mean accuracy over the number of
held-out problems, not over problems × seeds: every seed answers the same problems, so pooling
them as independent draws would give a too narrow interval. Source 2, otherwise: each adapter's card (held-out
accuracy and counts) and the dataset manifest (reward/NLL with intervals); the base model has no
card, so its row says so.

Example:
    >>> rows = aggregate([{"variant": "rft", "benchmark": "mawps", "seed": s, "correct": c,
    ...                    "total": 10, "accuracy": c / 10, "reward": 0.8, "nll": 0.5}
    ...                   for s, c in ((0, 2), (1, 4))])
    >>> round(rows[0].accuracy, 3), (rows[0].correct, rows[0].total), rows[0].seeds
    (0.3, (6, 20), 2)
"""
from __future__ import annotations

from dataclasses import dataclass

from ..stats import wilson
from .discovery import Experiment

BASE = "base"


@dataclass
class Row:
    variant: str
    benchmark: str = ""
    accuracy: float | None = None
    correct: int | None = None
    total: int | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    seeds: int = 0
    reward: float | None = None
    reward_ci: tuple[float, float] | None = None
    nll: float | None = None
    nll_ci: tuple[float, float] | None = None
    dataset: str = ""          # repo@revision (config)
    adapter: str = ""          # repo@revision, "" for the base model
    source: str = ""           # "results" | "card"
    metric: str = ""           # "pass@1 (greedy)", "pass@1 (n=4, T=0.6, top_p=0.95)"
    protocol_id: str = ""      # equal ids: comparable scores (toolkit.protocol)


def _mean(values) -> float | None:
    values = [float(v) for v in values if v is not None]
    return sum(values) / len(values) if values else None


def aggregate(rows: list[dict]) -> list[Row]:
    """Rows of a RESULTS table grouped by (variant, benchmark, protocol) over seeds: scores of two
    protocols are never averaged together."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        key = (str(r.get("variant") or BASE), str(r.get("benchmark") or ""), str(r.get("protocol_id") or ""))
        groups.setdefault(key, []).append(r)
    out = []
    for (variant, bench, pid), rs in groups.items():
        correct = sum(int(r.get("correct") or 0) for r in rs)
        total = sum(int(r.get("total") or 0) for r in rs)
        acc = _mean(r.get("accuracy") for r in rs)
        problems = total / max(1, len(rs))                    # per seed (the same problems each)
        lo, hi = wilson(acc * problems, problems) if total and acc is not None else (None, None)
        joined = lambda *keys: ", ".join(sorted({"@".join(str(r.get(k) or "") for k in keys)   # noqa: E731
                                                 for r in rs if r.get(keys[0])}))
        out.append(Row(variant, bench, acc, correct, total, lo, hi,
                       len({r.get("seed") for r in rs}), _mean(r.get("reward") for r in rs), None,
                       _mean(r.get("nll") for r in rs), None,
                       joined("dataset_repo", "dataset_revision"), joined("adapter_repo", "adapter_revision"),
                       "results", str(rs[0].get("metric") or "pass@1 (greedy)"), pid))
    return sorted(out, key=_order)


def _order(row: Row):
    return (row.benchmark, row.variant != BASE, row.variant)


def _ci(stat: dict | None) -> tuple[float, float] | None:
    if stat and stat.get("lo") is not None and stat.get("hi") is not None:
        return float(stat["lo"]), float(stat["hi"])
    return None


def from_cards(exp: Experiment) -> list[Row]:
    """Rows from the adapters' cards and the dataset manifest; the base model's row is empty."""
    out = [Row(BASE, source="card")]
    for a in exp.adapters:
        stats = exp.train_stats.get(a.dataset_config) or exp.train_stats.get(a.variant) or {}
        reward, nll = stats.get("reward") or {}, stats.get("nll") or {}
        dataset = f"{a.dataset_repo}@{a.dataset_revision or 'main'} ({a.dataset_config})"
        for e in a.evals or [{}]:
            correct, total = e.get("correct"), e.get("total")
            lo, hi = wilson(int(correct), int(total)) if total else (None, None)
            bench = "/".join(str(e[k]) for k in ("dataset", "split") if e.get(k))
            out.append(Row(a.variant, bench, e.get("accuracy"), correct, total, lo, hi, 1 if e else 0,
                           reward.get("mean"), _ci(reward), nll.get("mean"), _ci(nll), dataset,
                           f"{a.repo_id}@{a.revision}", "card", str(e.get("metric") or ""),
                           str(e.get("protocol_id") or "")))
    return sorted(out, key=_order)


def leaderboard(exp: Experiment, results: list[dict], error: str = "") -> tuple[list[Row], str]:
    """``(rows, note)``: the results dataset's rows (:func:`.results.published`) when there are
    any, else the cards; ``error`` says why the results dataset could not be read."""
    try:
        rows = aggregate(results)
    except (TypeError, ValueError) as e:   # ill-typed rows: the cards' numbers
        rows, error = [], error or str(e)
    if rows:
        return rows, f"From the results dataset `{exp.results_repo}` (seeds aggregated; 95% Wilson " \
                     "intervals of the mean accuracy over the held-out problems)." + protocol_note(rows)
    if error:
        return from_cards(exp), "From the adapters' model cards (the results dataset is unreadable)."
    return from_cards(exp), ("From the adapters' model cards and the training dataset's manifest (no results "
                             "dataset published yet: run `qup study` for seeds and the base model).")


def protocol_note(rows: list[Row]) -> str:
    """A warning per benchmark whose rows were scored under more than one protocol.

    >>> protocol_note([Row("base", "gsm8k", protocol_id="a"), Row("rft", "gsm8k", protocol_id="b")])
    ' ⚠ `gsm8k`: 2 evaluation protocols (a, b): compare only rows with the same protocol (Configs tab).'
    """
    by: dict[str, set[str]] = {}
    for r in rows:
        by.setdefault(r.benchmark, set()).add(r.protocol_id or "not recorded")
    return "".join(f" ⚠ `{b}`: {len(p)} evaluation protocols ({', '.join(sorted(p))}): compare only rows "
                   "with the same protocol (Configs tab)." for b, p in sorted(by.items()) if len(p) > 1)


def filter_rows(rows: list[Row], benchmark: str = "", text: str = "") -> list[Row]:
    """Rows of one benchmark ('' = all) whose variant, metric or protocol contains ``text``.

    >>> [r.variant for r in filter_rows([Row("rft", "gsm8k"), Row("base", "mawps")], "gsm8k")]
    ['rft']
    """
    text = (text or "").strip().lower()
    return [r for r in rows if (not benchmark or r.benchmark == benchmark)
            and (not text or any(text in str(x).lower() for x in (r.variant, r.metric, r.protocol_id)))]


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, ci=None) -> str:
    if x is None:
        return "—"
    return f"{x:.3f}" + (f" ({ci[0]:.3f}–{ci[1]:.3f})" if ci else "")


def table(rows: list[Row]) -> list[list[str]]:
    """Display rows (strings) for :data:`COLUMNS`."""
    out = []
    for r in rows:
        counts = f"{r.correct}/{r.total}" if r.total else "—"
        interval = f"{_pct(r.ci_low)}–{_pct(r.ci_high)}" if r.ci_low is not None else "—"
        out.append([r.variant if r.variant != BASE else "base (no LoRA)", r.benchmark or "—",
                    r.metric or "—", _pct(r.accuracy), counts, interval, r.protocol_id or "—", str(r.seeds or "—"), _num(r.reward, r.reward_ci),
                    _num(r.nll, r.nll_ci), r.dataset or "—", r.adapter or "—"])
    return out


COLUMNS = ["variant", "benchmark", "metric", "held-out score", "correct/total", "95% CI", "protocol", "seeds",
           "train reward (95% CI)", "train NLL (95% CI)", "training data", "adapter"]
