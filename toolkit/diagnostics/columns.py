"""Diagnostic columns, each declared once: name, type, label, aggregation, direction, and the
function that scores it. Everything else derives from this registry: the TRACE schema
(:mod:`toolkit.schema`), ``score``'s output (:mod:`toolkit.stages.score`), the per-variant table
with 95% intervals and its plots (:mod:`.tables`), the run table, the dataset card, the study's
results dataset and its predictors (:mod:`toolkit.study`).

**Adding a metric** (e.g. IFD) touches two files:

1. its scoring function, in its own module under ``toolkit/diagnostics/`` (``ifd.py``)::

       def score_rows(rows: list[dict], models: Models) -> list[float | None]:
           '''One value per row (None: not measured). ``models``: the learner, judge, ...'''

2. one entry in :data:`BUILTIN` below::

       Metric((Column("ifd", "IFD", higher_is_better=False, doc="..."),),
              "toolkit.diagnostics.ifd:score_rows", needs=("learner",)),

A scorer may fill several columns at once (return ``{column: [values]}``); ``needs`` names the
:class:`Models` it uses (the columns stay null when the run has none of them); a scorer without
``"reference"`` in its needs depends only on the row's text and is computed once per text.
At runtime (a test, a plug-in) :func:`register` does the same, and :func:`registered` undoes it:

    >>> def chars(rows, models):
    ...     return [float(len(r["completion"])) for r in rows]
    >>> with registered(Column("chars", "characters", higher_is_better=None), score=chars):
    ...     [c.name for c in shown()][-1]
    'chars'
    >>> "chars" in names()
    False
"""
from __future__ import annotations

import importlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

NEEDS = ("reward", "learner", "embedder", "reference")


@dataclass(frozen=True)
class Column:
    """One per-row diagnostic column.

    ``aggregate``: "mean" (a mean with a 95% interval in every table) or "" (bookkeeping such
    as a token count: in the schema, never in a table); ``higher_is_better``: True / False makes
    the column a predictor of utility in the study, None claims no direction."""
    name: str
    label: str
    dtype: str = "float32"
    aggregate: str = "mean"
    higher_is_better: bool | None = None
    doc: str = ""

    def __post_init__(self):
        if self.aggregate not in ("mean", ""):
            raise ValueError(f"column {self.name}: aggregate must be 'mean' or '', got {self.aggregate!r}")


@dataclass
class Models:
    """What a scoring function may use; None where the run has none."""
    reward: Any = None        # a Judge or RewardModel (toolkit.diagnostics.reward)
    learner: Any = None       # the SLM as a Generator (score, NLL)
    embedder: Any = None      # sentence embedder (toolkit.diagnostics.drift)
    reference: Any = None     # the SLM's own traces (a Dataset) of the same problems
    counts: Counter = field(default_factory=Counter)   # what a scorer skipped, reported by score
    min_verdict_mass: float = 0.5

    def has(self, needs: tuple[str, ...]) -> bool:
        return all(getattr(self, n) is not None for n in needs)


@dataclass(frozen=True)
class Metric:
    """Columns filled by one scoring function (``"module:function"`` or a callable)."""
    columns: tuple[Column, ...]
    score: str | Callable | None = None
    needs: tuple[str, ...] = ()

    def __post_init__(self):
        bad = set(self.needs) - set(NEEDS)
        if bad:
            raise ValueError(f"metric {self.columns[0].name}: unknown needs {sorted(bad)}; known {NEEDS}")

    @property
    def per_text(self) -> bool:
        """Its values depend only on the row's text (computed once per text across variants)."""
        return "reference" not in self.needs

    def __call__(self, rows: list[dict], models: Models) -> dict[str, list]:
        fn = self.score
        if isinstance(fn, str):
            module, _, attr = fn.partition(":")
            fn = getattr(importlib.import_module(module), attr)
        out = fn(rows, models)
        if not isinstance(out, dict):
            out = {self.columns[0].name: list(out)}
        for c in self.columns:
            if len(out.get(c.name, ())) != len(rows):
                raise ValueError(f"metric {c.name}: its scorer returned {len(out.get(c.name, ()))} "
                                 f"values for {len(rows)} rows")
        return out


BUILTIN = [
    Metric((Column("reward", "reward", higher_is_better=True,
                   doc="perceived quality: judge P(Yes) in [0, 1], or a reward model's logit"),
            Column("reward_kind", "reward kind", "string", "", doc='"judge" | "classifier"'),
            Column("reward_model", "reward model", "string", "",
                   doc='"<Hub id>@<revision>" of the judge or reward model')),
           "toolkit.diagnostics.reward:score_rows", needs=("reward",)),
    Metric((Column("nll", "NLL", higher_is_better=False,
                   doc="adaptation cost: the learner's mean token NLL of the completion (SFT's loss tokens)"),
            Column("nll_tokens", "NLL tokens", "int32", "", doc="tokens behind nll")),
           "toolkit.diagnostics.adaptation_cost:score_rows", needs=("learner",)),
    Metric((Column("length_ratio", "length ratio",
                   doc="drift: completion tokens / mean of the SLM's other traces of the problem"),
            Column("ngram_overlap", "ROUGE-2", doc="drift: best ROUGE-2 F1 against the SLM's other traces"),
            Column("embed_cosine", "cosine", doc="drift: best all-MiniLM-L6-v2 cosine against them")),
           "toolkit.diagnostics.drift:score_rows", needs=("reference",)),
    Metric((Column("rsr", "RSR", higher_is_better=False,
                   doc="Rank-Surprisal Ratio (Yang et al., arXiv 2601.14249): Σ min(token rank, 100) / "
                       "Σ token NLL under the learner, ranks 1-based; lower teaches better"),
            Column("ifd", "IFD", higher_is_better=True,
                   doc="Instruction-Following Difficulty (Cherry LLM, arXiv 2308.12032): learner loss of "
                       "the answer given the question / without it; Cherry LLM keeps the highest"),
            Column("grape", "GRAPE", higher_is_better=True,
                   doc="GRAPE (arXiv 2502.04194): the learner's length-normalised log-probability of "
                       "the completion (mean token log-prob); higher fits better")),
           "toolkit.diagnostics.compatibility:score_rows", needs=("learner",)),
]
_METRICS: list[Metric] = list(BUILTIN)


def metrics() -> list[Metric]:
    """Every registered metric, built-ins first."""
    return list(_METRICS)


def columns() -> list[Column]:
    """Every registered column, in schema order."""
    return [c for m in _METRICS for c in m.columns]


def names() -> list[str]:
    return [c.name for c in columns()]


def shown() -> list[Column]:
    """The columns every table shows (mean with a 95% interval)."""
    return [c for c in columns() if c.aggregate == "mean"]


def predictors() -> list[Column]:
    """Columns with a direction: the study ranks variants by them to predict utility."""
    return [c for c in shown() if c.higher_is_better is not None]


def get(name: str) -> Column:
    for c in columns():
        if c.name == name:
            return c
    raise KeyError(f"no diagnostic column {name!r}; registered: {names()}")


def features() -> dict:
    """``{name: datasets.Value}`` of every column (the diagnostic part of TRACE)."""
    from datasets import Value
    return {c.name: Value(c.dtype) for c in columns()}


def register(*cols: Column, score: str | Callable | None = None, needs: tuple[str, ...] = ()) -> Metric:
    """Register ``cols`` filled by ``score`` (see the module doc); returns the :class:`Metric`."""
    taken = set(names()) & {c.name for c in cols}
    if taken:
        raise ValueError(f"diagnostic column(s) {sorted(taken)} already registered")
    metric = Metric(tuple(cols), score, tuple(needs))
    _METRICS.append(metric)
    return metric


def unregister(metric: Metric) -> None:
    _METRICS.remove(metric)


@contextmanager
def registered(*cols: Column, score: str | Callable | None = None,
               needs: tuple[str, ...] = ()) -> Iterator[Metric]:
    """:func:`register` for the duration of a ``with`` block."""
    metric = register(*cols, score=score, needs=needs)
    try:
        yield metric
    finally:
        unregister(metric)
