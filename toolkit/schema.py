"""Column definitions of every arrow in the pipeline, defined once.

``PROBLEM`` rows come out of :mod:`toolkit.sources`; ``TRACE`` rows out of ``sample`` (the
``answer``/``correct`` columns are filled by ``verify``); ``EVAL`` rows out of ``evaluate``.
Stages never invent ad-hoc columns: they build rows with these features.
"""
from __future__ import annotations

from datasets import Features, Value

from .diagnostics import columns

PROBLEM = Features({
    "id": Value("string"),            # stable across runs/machines: "<source>/<split>/<key>"
    "question": Value("string"),
    "gold_answer": Value("string"),
    "gold_solution": Value("string"),  # may be empty
    "source": Value("string"),
    "split": Value("string"),
})

_TRACE_BASE = Features({
    **PROBLEM,
    "problem_id": Value("string"),
    "trace_id": Value("string"),      # "<problem_id>#<sample_index>"
    "sample_index": Value("int32"),
    "seed": Value("int64"),
    "model_id": Value("string"),
    "model_revision": Value("string"),
    "prompt_id": Value("string"),     # "<template name>@<sha1[:8]>"
    "params": Value("string"),        # JSON of the sampling params
    "prompt": Value("string"),        # the rendered chat prompt, as sent
    "completion": Value("string"),
    "prompt_tokens": Value("int32"),
    "completion_tokens": Value("int32"),
    "finish_reason": Value("string"),  # "stop" | "eos_token" | "length"
    "answer": Value("string"),        # extracted by verify ("" when none)
    "correct": Value("bool"),
    "verify_status": Value("string"),  # "correct" | "wrong" | "no_answer" | "unverifiable_gold" | "timeout"
    "variant": Value("string"),       # a registered variant (toolkit.variants): "self", "rft", ...
    "parent_id": Value("string"),     # trace this row was derived from ("" for raw samples)
    # Oracle provenance (empty / null for the SLM's own traces). model_id above names the author of
    # the trajectory: the Oracle for oracle_synth/oracle_refine, the SLM for style_aligned rows.
    "mode": Value("string"),          # how the variant made the row: synth, refine, prefix, minimal_edit, passthrough
    "oracle_model_id": Value("string"),
    "oracle_model_revision": Value("string"),
    "oracle_prompt_id": Value("string"),   # the Oracle's template id ("<name>@<sha1[:8]>")
    "oracle_prompt": Value("string"),      # the Oracle prompt as rendered (its chat template's system prompt included)
    "edit_distance": Value("float32"),     # normalised token edit distance to the parent trace
    "oracle_token_share": Value("float32"),  # share of the completion's tokens written by the Oracle
})


def trace() -> Features:
    """TRACE with every diagnostic column registered now (``qup score``; null until measured):
    perceived quality, adaptation cost, drift, ... (:mod:`toolkit.diagnostics.columns`)."""
    return Features({**_TRACE_BASE, **columns.features()})


TRACE = trace()

EVAL = Features({
    "problem_id": Value("string"),
    "sample_index": Value("int32"),   # 0..n-1 of evaluate's samples (0 when greedy)
    "question": Value("string"),
    "gold_answer": Value("string"),
    "completion": Value("string"),
    "answer": Value("string"),
    "correct": Value("bool"),
    "verify_status": Value("string"),
    "completion_tokens": Value("int32"),
    "finish_reason": Value("string"),
    "model_id": Value("string"),
    "adapter": Value("string"),
})


# ``qup study``: one row per SLM × variant × seed × benchmark (the results dataset; the Space's
# leaderboard and paradox plot read it). ``variant`` "base" is the SLM without an adapter (seed -1).
_RESULTS_BASE = Features({
    "experiment": Value("string"),         # the study's name (its recipe name)
    "slm": Value("string"),                # base model Hub id
    "slm_revision": Value("string"),
    "variant": Value("string"),            # "base", "rft", ..., "selected_lam0.5"
    "lam": Value("float32"),               # λ of a `selected` variant (null otherwise)
    "seed": Value("int32"),                # training seed (-1 for base)
    "benchmark": Value("string"),          # problem source, e.g. "gsm8k", "mawps"
    "split": Value("string"),
    "correct": Value("int32"),
    "total": Value("int32"),
    "accuracy": Value("float32"),
    "ci_low": Value("float32"),            # 95% interval of accuracy (Wilson; bootstrap when sampled)
    "ci_high": Value("float32"),
    "metric": Value("string"),             # what accuracy is: "pass@1 (greedy)", "pass@1 (n=4, T=0.6, top_p=0.95)"
    "scores": Value("string"),             # JSON: every score of the evaluation (pass@k, maj@k) with its interval
    "protocol_id": Value("string"),        # digest of the protocol's decisive fields: equal ids, comparable scores
    "protocol": Value("string"),           # JSON: the protocol record (toolkit.protocol)
    "train_rows": Value("int32"),          # rows and completion tokens trained on
    "train_tokens": Value("int64"),
    # then the training data's mean of every shown diagnostic column (see results())
    "train_wall_s": Value("float32"),
    "train_cpu_s": Value("float32"),
    "train_gpu_s": Value("float32"),       # wall seconds on a GPU (0 on CPU)
    "eval_wall_s": Value("float32"),
    "dataset_repo": Value("string"),       # exact training data: repo, config, revision
    "dataset_config": Value("string"),
    "dataset_revision": Value("string"),
    "adapter_repo": Value("string"),       # exact adapter: repo and revision ("" for base)
    "adapter_revision": Value("string"),
})


# the results dataset's ``details`` config: every evaluated sample of every row above (the Space's
# details tab puts two models' outputs on the same problems side by side)
DETAILS = Features({
    "experiment": Value("string"), "variant": Value("string"), "seed": Value("int32"),
    "benchmark": Value("string"), "split": Value("string"), "protocol_id": Value("string"),
    **{k: v for k, v in EVAL.items() if k not in ("model_id", "adapter")},
})

# the study's whole report, published beside the results rows (the Space's paradox tab shows it)
REPORT_FILES = ("report.md", "paradox.png")


def results() -> Features:
    """RESULTS: the fixed fields with, after ``train_tokens``, the training data's mean of every
    shown diagnostic column (reward, nll, drift, ...) as registered now."""
    names = list(_RESULTS_BASE)
    cut = names.index("train_tokens") + 1
    means = {c.name: Value("float32") for c in columns.shown()}
    return Features({**{n: _RESULTS_BASE[n] for n in names[:cut]}, **means,
                     **{n: _RESULTS_BASE[n] for n in names[cut:]}})


RESULTS = results()


def empty_row(features: Features = None) -> dict:
    """A row of ``features`` (default TRACE) with neutral defaults, to be filled by a stage:
    False, 0, "" and None (not yet measured) for float columns such as a reward or an NLL.

    >>> from datasets import Value
    >>> empty_row(Features({"reward": Value("float32"), "n": Value("int32"), "t": Value("string")}))
    {'reward': None, 'n': 0, 't': ''}
    """
    row = {}
    for name, feat in (features or TRACE).items():
        dtype = feat.dtype
        row[name] = (False if dtype == "bool" else 0 if dtype.startswith(("int", "uint"))
                     else None if dtype.startswith("float") else "")
    return row


def empty_trace() -> dict:
    """A TRACE row with neutral defaults (see :func:`empty_row`)."""
    return empty_row(TRACE)
