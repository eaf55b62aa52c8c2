"""``verify``: extract each trace's final answer and check it against the gold with math-verify.

Fills the TRACE columns ``answer``, ``correct`` and ``verify_status``. An unparseable gold answer
is counted as ``unverifiable_gold``, never as correct.

Example:
    >>> ds = verify(load("runs/x/self"))                                       # doctest: +SKIP
    >>> verify_summary(ds)["correct_rate"]
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from datasets import Dataset

from ..answers import extract_answer
from ..answers import verify as verify_answer
from ..config import ConfigError
from .io import load, save


def _verify_row(row: dict) -> dict:
    answer = extract_answer(row["completion"])
    status = verify_answer(answer, row["gold_answer"])
    return {"answer": answer or "", "correct": status == "correct", "verify_status": status}


def verify(ds: Dataset) -> Dataset:
    """Return ``ds`` with ``answer``, ``correct`` and ``verify_status`` filled for every row."""
    return ds.map(_verify_row, desc="verify", load_from_cache_file=False)


def verify_summary(ds: Dataset) -> dict:
    """Counts per status and the correct rate over rows and problems."""
    statuses = Counter(ds["verify_status"])
    solved = {pid for pid, ok in zip(ds["problem_id"], ds["correct"]) if ok}
    n = len(ds)
    return {"rows": n, "correct": statuses.get("correct", 0),
            "correct_rate": statuses.get("correct", 0) / n if n else 0.0,
            "problems": len(set(ds["problem_id"])), "problems_solved": len(solved),
            "statuses": dict(statuses)}


@dataclass
class VerifyConfig:
    traces: str = field(default="", metadata={"help": "sampled traces (a `qup sample` output dir)"})
    out: str = field(default="", metadata={"help": "output dataset dir (the verified `self` variant)"})


def verify_command(cfg: VerifyConfig) -> dict:
    if not cfg.traces or not cfg.out:
        raise ConfigError("verify: 'traces' and 'out' are required")
    ds = verify(load(cfg.traces))
    save(ds, cfg.out)
    return {"out": cfg.out, **verify_summary(ds)}
