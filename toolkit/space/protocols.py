"""The Configs and Details tabs: each model's evaluation protocol side by side, and two models'
per-problem outputs side by side, from the published results dataset (``default`` rows carry the
protocol, the ``details`` config every evaluated sample). Like the Open LLM Leaderboard's
comparator: a reader sees *how* each score was obtained before comparing them.

Rows come from a Hub repo (the owner's namespace only): every value is parsed defensively and
shown as plain table text, long texts cut.

Example:
    >>> rows = [{"variant": "base", "seed": -1, "benchmark": "gsm8k", "protocol_id": "a",
    ...          "protocol": '{"shots": 0, "prompt_id": "math_cot@1"}'},
    ...         {"variant": "rft", "seed": 0, "benchmark": "gsm8k", "protocol_id": "b",
    ...          "protocol": '{"shots": 5, "prompt_id": "math_cot@1"}'}]
    >>> headers, table, warning = configs(rows, ["base", "rft · seed 0"])
    >>> headers, table[0]
    (['field', 'base', 'rft · seed 0'], ['protocol_id', 'a', 'b'])
    >>> warning
    '⚠ The protocols differ (shots: 0 vs 5): these scores are not one column.'
"""
from __future__ import annotations

import json

from ..protocol import DECISIVE, NOTED, differences

MAX_TEXT = 2000          # characters of a model output shown per cell


def label(row: dict) -> str:
    """How the tabs name a model: ``base``, ``rft · seed 0``."""
    seed = row.get("seed")
    return str(row.get("variant") or "base") + ("" if seed in (None, -1) else f" · seed {seed}")


def _protocol(row: dict) -> dict:
    try:
        rec = json.loads(row.get("protocol") or "{}")
    except (TypeError, ValueError):
        return {}
    return rec if isinstance(rec, dict) else {}


def models(rows: list[dict]) -> list[str]:
    """Every evaluated model (variant × seed) of the results rows, base first."""
    seen = {label(r): (r.get("variant") != "base", label(r)) for r in rows}
    return sorted(seen, key=lambda k: seen[k])


def configs(rows: list[dict], chosen: list[str], benchmark: str = "") -> tuple[list[str], list[list[str]], str]:
    """``(headers, table, warning)``: one row per protocol field, one column per chosen model
    (its first benchmark unless ``benchmark``); the warning names the decisive fields that differ."""
    recs = {}
    for r in rows:
        if label(r) in chosen and label(r) not in recs and (not benchmark or r.get("benchmark") == benchmark):
            recs[label(r)] = {**_protocol(r), "protocol_id": r.get("protocol_id") or "not recorded",
                              "metric": r.get("metric") or ""}
    cols = [c for c in chosen if c in recs]
    fields = ["protocol_id", "metric", *DECISIVE, *NOTED]
    table = [[f, *[_cell(recs[c].get(f)) for c in cols]] for f in fields
             if any(recs[c].get(f) not in (None, "") for c in cols)]
    warning = ""
    if len(cols) > 1:
        if any(not _protocol(r) for r in rows if label(r) in cols):
            warning = "⚠ A chosen model's protocol was not recorded: its score cannot be compared."
        diffs = sorted({d for c in cols[1:] for d in differences(recs[cols[0]], recs[c])})
        if diffs:
            warning = f"⚠ The protocols differ ({'; '.join(diffs)}): these scores are not one column."
        elif not warning:
            warning = "✓ Same protocol (decisive fields equal): the scores are comparable."
    return ["field", *cols], table, warning


def _cell(value) -> str:
    if value is None:
        return "—"
    text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
    return text[:300]


DETAIL_COLUMNS = ["problem", "question", "gold", "A answer", "A", "B answer", "B", "A output", "B output"]


def details(rows: list[dict], a: str, b: str, benchmark: str) -> tuple[list[list[str]], str]:
    """Per problem of ``benchmark`` evaluated by both models: answers with ✓/✗ and outputs
    (sample 0), and a summary line (problems, each model's correct, where they disagree)."""
    def by(model):
        return {r["problem_id"]: r for r in rows if label(r) == model and r.get("benchmark") == benchmark
                and int(r.get("sample_index") or 0) == 0}
    ra, rb = by(a), by(b)
    common = [p for p in ra if p in rb]
    mark = lambda r: "✓" if r.get("correct") else "✗"            # noqa: E731
    table = [[p.split("/")[-1], str(ra[p].get("question") or "")[:300], str(ra[p].get("gold_answer") or ""),
              str(ra[p].get("answer") or "—"), mark(ra[p]), str(rb[p].get("answer") or "—"), mark(rb[p]),
              str(ra[p].get("completion") or "")[:MAX_TEXT], str(rb[p].get("completion") or "")[:MAX_TEXT]]
             for p in common]
    if not common:
        return [], f"No problem of `{benchmark}` was evaluated by both {a} and {b}."
    ca, cb = (sum(bool(r[p].get("correct")) for p in common) for r in (ra, rb))
    split = sum(bool(ra[p].get("correct")) != bool(rb[p].get("correct")) for p in common)
    note = f"{len(common)} problems of `{benchmark}`: {a} {ca} correct, {b} {cb} correct; they differ on {split}."
    pa, pb = (next(iter(r.values())).get("protocol_id") for r in (ra, rb))
    if pa != pb:
        note += f" ⚠ Different protocols ({pa} vs {pb}): see the Configs tab."
    return table, note
