"""The evaluation protocol: everything besides the model that decides a score, recorded with it.

A score without its protocol cannot be compared: Qwen2.5-0.5B-Instruct's GSM8K is 49.6 in one
report and 26.8 in another (prompt, shots, chat template, extraction). ``evaluate`` writes
:func:`record` into ``metrics.json``; the results dataset, the model card (``model-index``
``dataset.args`` and ``.eval_results/*.yaml`` ``notes``), the report and the Space carry it.
:data:`DECISIVE` fields make two scores incomparable when they differ (:func:`differences`);
the rest (engine, dtype, revisions) is noted beside them.

Example:
    >>> a = {"prompt_id": "math_cot@1a2b3c4d", "shots": 0, "chat_template": True,
    ...      "sampling": {"greedy": True}, "max_new_tokens": 256, "extraction": {"method": "qup"}}
    >>> differences(a, {**a, "shots": 5})
    ['shots: 0 vs 5']
    >>> protocol_id(a) == protocol_id({**a, "engine": "vllm 0.32.0"})
    True
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .models import ADAPTER_WEIGHTS

# fields whose difference makes two scores different measurements (never one column unmarked)
DECISIVE = ("prompt_id", "prompt_sha256", "shots", "chat_template", "sampling", "max_new_tokens",
            "stop", "extraction")
# recorded beside them: what ran it (a difference is noted, not refused)
NOTED = ("engine", "dtype", "model", "model_revision", "adapter", "adapter_revision")
EXTRACTION_TARGETS = ["\\boxed{X}", "#### X", "The answer is: X", "Answer: X", "last number"]


def extraction() -> dict:
    """How answers are extracted and checked (``toolkit.answers``), with math-verify's version."""
    from .publishing.cards import package_version
    return {"method": "qup.answers", "targets": EXTRACTION_TARGETS,
            "compare": "exact for plain numbers, else math-verify",
            "math_verify": package_version("math-verify")}


def sampling(temperature: float, top_p: float, n: int, seed: int) -> dict:
    """``{"greedy": True}`` or the sampled settings (what pass@k/maj@k were drawn with).

    >>> sampling(0.0, 1.0, 1, 0), sampling(0.6, 0.95, 4, 0)["n"]
    ({'greedy': True}, 4)
    """
    if temperature == 0:
        return {"greedy": True}
    return {"greedy": False, "temperature": temperature, "top_p": top_p, "n": n, "seed": seed}


def adapter_revision(adapter: str) -> str:
    """A local adapter's weights digest (``sha256:…``), else the Hub id's given revision ('' = none)."""
    if not adapter:
        return ""
    weights = Path(adapter) / ADAPTER_WEIGHTS
    if weights.is_file():
        return "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    return adapter.partition("@")[2]


def protocol_id(record: dict) -> str:
    """A short digest of the decisive fields: equal ids, comparable scores."""
    decisive = {k: record.get(k) for k in DECISIVE}
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:12]


def _short(value) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def differences(a: dict, b: dict, fields=DECISIVE) -> list[str]:
    """``"field: a vs b"`` for each of ``fields`` that differs between two protocol records."""
    return [f"{k}: {_short(a.get(k))} vs {_short(b.get(k))}" for k in fields if a.get(k) != b.get(k)]


def metric_label(record: dict, metric: str = "pass@1") -> str:
    """The column name a score belongs in: ``pass@1 (greedy)``, ``pass@1 (n=4, T=0.6, top_p=0.95)``.

    >>> metric_label({"sampling": {"greedy": False, "temperature": 0.6, "top_p": 0.95, "n": 4}})
    'pass@1 (n=4, T=0.6, top_p=0.95)'
    """
    s = record.get("sampling") or {"greedy": True}
    if s.get("greedy"):
        return f"{metric} (greedy)"
    return f"{metric} (n={s['n']}, T={s['temperature']:g}, top_p={s['top_p']:g})"


def notes(record: dict) -> str:
    """One line stating the protocol (``.eval_results`` ``notes``, the report, the Space).

    >>> notes({"prompt_id": "math_cot@1a2b3c4d", "shots": 0, "chat_template": True, "max_new_tokens": 256,
    ...        "sampling": {"greedy": True}, "extraction": {"math_verify": "0.9.0"}, "engine": "vllm 0.32.0",
    ...        "dtype": "bfloat16"})
    'prompt math_cot@1a2b3c4d, 0-shot, chat template, greedy, max 256 new tokens, math-verify 0.9.0, vllm 0.32.0 bfloat16'
    """
    s = record.get("sampling") or {}
    sampled = "greedy" if s.get("greedy", True) else \
        f"sampled n={s.get('n')} T={s.get('temperature'):g} top_p={s.get('top_p'):g} seed={s.get('seed')}"
    parts = [f"prompt {record.get('prompt_id')}", f"{record.get('shots', 0)}-shot",
             "chat template" if record.get("chat_template", True) else "no chat template", sampled,
             f"max {record.get('max_new_tokens')} new tokens"]
    if record.get("stop"):
        parts.append("stop " + json.dumps(record["stop"]))
    parts.append(f"math-verify {(record.get('extraction') or {}).get('math_verify', '?')}")
    parts.append(" ".join(str(record[k]) for k in ("engine", "dtype") if record.get(k)))
    return ", ".join(p for p in parts if p)


def dataset_args(record: dict) -> dict:
    """The protocol as flat strings for ``model-index`` ``dataset.args`` (one key per field; local
    paths are left out: the adapter is named by its weights digest).

    >>> dataset_args({"shots": 0, "sampling": {"greedy": True}, "adapter": "/runs/x/adapters/rft",
    ...               "adapter_revision": "sha256:ab12", "model": "/root/.cache/m"})
    {'shots': '0', 'sampling': '{"greedy": true}', 'adapter_revision': 'sha256:ab12'}
    """
    local = lambda v: isinstance(v, str) and v.startswith(("/", ".", "~"))     # noqa: E731
    return {k: _short(record[k]) for k in (*DECISIVE, *NOTED, "protocol_id")
            if record.get(k) not in (None, "") and k != "adapter" and not local(record[k])}
