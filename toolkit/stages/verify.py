"""``verify``: extract each trace's final answer and check it against the gold with math-verify.

Fills the TRACE columns ``answer``, ``correct`` and ``verify_status``. An unparseable gold answer
is counted as ``unverifiable_gold``, never as correct. The verified samples are the ``self``
variant (:mod:`toolkit.variants.self`).

Example:
    >>> ds = verify(load("runs/x/samples"))                                    # doctest: +SKIP
    >>> trace_stats(ds)["correct_rate"]                                        # doctest: +SKIP

    In memory (two traces of one problem, gold ``5``):

    >>> ds = verify(Dataset.from_dict({"problem_id": ["p1", "p1"], "gold_answer": ["5", "5"],
    ...                                "completion": ["2+3=5. The answer is: 5", "The answer is: 6"]}))
    >>> [(r["answer"], r["verify_status"]) for r in ds], trace_stats(ds)["correct_rate"]
    ([('5', 'correct'), ('6', 'wrong')], 0.5)
"""
from __future__ import annotations

from dataclasses import dataclass, field

from datasets import Dataset

from ..answers import grade
from ..config import ConfigError
from ..io import load, save
from ..stats import trace_stats


def _verify_row(row: dict) -> dict:
    answer, status = grade(row["completion"], row["gold_answer"])
    return {"answer": answer or "", "correct": status == "correct", "verify_status": status}


def verify(ds: Dataset) -> Dataset:
    """Return ``ds`` with ``answer``, ``correct`` and ``verify_status`` filled for every row."""
    return ds.map(_verify_row, desc="verify", load_from_cache_file=False)


@dataclass
class VerifyConfig:
    traces: str = field(default="", metadata={"help": "sampled traces (a `qup sample` output dir)"})
    out: str = field(default="", metadata={"help": "output dataset dir (the verified `self` variant)"})


def summary(ds: Dataset) -> dict:
    """The counts a verify run reports (a subset of :func:`toolkit.stats.trace_stats`)."""
    s = trace_stats(ds)
    return {k: s[k] for k in ("rows", "correct", "correct_rate", "problems", "problems_solved",
                              "verify_status")}


def verify_command(cfg: VerifyConfig) -> dict:
    if not cfg.traces or not cfg.out:
        raise ConfigError("verify: 'traces' and 'out' are required")
    ds = verify(load(cfg.traces))
    save(ds, cfg.out)
    return {"out": cfg.out, **summary(ds)}
