"""Statistics of trace datasets, computed in one place (stage summaries, cards, reports).

Example:
    >>> from datasets import Dataset
    >>> s = trace_stats(Dataset.from_dict({"problem_id": ["a", "a", "b"], "correct": [True, False, False]}))
    >>> s["rows"], s["problems"], s["problems_solved"], s["correct_rate"]
    (3, 2, 1, 0.3333)
"""
from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.compute as pc

# Numeric TRACE columns that are bookkeeping, not diagnostics (completion_tokens has its own
# column); the registry's bookkeeping columns (nll_tokens, ...) are added where it is read.
NOT_DIAGNOSTIC = {"sample_index", "seed", "prompt_tokens", "completion_tokens"}


def _distinct(table: pa.Table, column: str, limit: int = 8) -> list[str]:
    if column not in table.column_names:
        return []
    values = pc.unique(table[column]).to_pylist()
    return sorted(str(v) for v in values if v not in (None, ""))[:limit]


def _mean(table: pa.Table, column: str) -> float | None:
    if column not in table.column_names or table.num_rows == 0:
        return None
    col = table[column]
    if pa.types.is_boolean(col.type):
        col = pc.cast(col, pa.float64())
    value = pc.mean(col).as_py()
    return None if value is None else round(float(value), 4)


def trace_stats(data) -> dict:
    """Statistics of a TRACE dataset (``datasets.Dataset`` or ``pyarrow.Table``): rows, problems
    (and solved), correct count and rate, mean tokens, verify statuses, mean of every numeric
    diagnostic column (reward, nll, ...), and the distinct models, prompts and params."""
    table = data.with_format("arrow")[:] if hasattr(data, "with_format") else data
    from .diagnostics.columns import columns
    skip = NOT_DIAGNOSTIC | {c.name for c in columns() if not c.aggregate}
    diagnostics = {}
    for name, typ in zip(table.column_names, table.schema.types):
        if name not in skip and (pa.types.is_integer(typ) or pa.types.is_floating(typ)):
            if table.num_rows and table[name].null_count == table.num_rows:
                continue   # not measured for this variant (e.g. edit_distance of raw samples)
            diagnostics[name] = _mean(table, name)
    status = {}
    if "verify_status" in table.column_names and table.num_rows:
        counts = pc.value_counts(table["verify_status"]).to_pylist()
        status = {str(c["values"]): c["counts"] for c in sorted(counts, key=lambda c: str(c["values"]))}
    solved = None
    if {"problem_id", "correct"} <= set(table.column_names) and table.num_rows:
        solved = len(pc.unique(table.filter(pc.fill_null(table["correct"], False))["problem_id"]))
    return {
        "rows": table.num_rows,
        "problems": len(pc.unique(table["problem_id"])) if "problem_id" in table.column_names else None,
        "problems_solved": solved if solved is not None else 0,
        "correct": int(pc.sum(table["correct"]).as_py() or 0) if "correct" in table.column_names else 0,
        "correct_rate": _mean(table, "correct"),
        "mean_completion_tokens": _mean(table, "completion_tokens"),
        "diagnostics": diagnostics,
        "verify_status": status,
        "models": _distinct(table, "model_id"),
        "model_revisions": _distinct(table, "model_revision"),
        "prompt_ids": _distinct(table, "prompt_id"),
        "reward_models": [f"{k}: {m}" for k, m in zip(_distinct(table, "reward_kind"),
                                                      _distinct(table, "reward_model"))],
        "params": _distinct(table, "params", limit=4),
        "sources": _distinct(table, "source"),
        "source_splits": _distinct(table, "split"),
    }


def wilson(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sensible at 0/n and n/n, unlike the normal one).

    >>> [round(x, 3) for x in wilson(5, 100)]
    [0.022, 0.112]
    """
    if total <= 0:
        return 0.0, 0.0
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)
