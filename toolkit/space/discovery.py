"""Find the experiments on a Hub: nothing is hard-coded, everything comes from what publishing wrote.

An experiment is a trace dataset repo; its adapters are the model repos tagged ``qup`` whose card
lists it under ``datasets:`` (``HfApi.list_models(filter=["qup", "dataset:<repo>"])``). From each
adapter card: ``base_model``, the ``qup:`` block (variant, exact training data, held-out counts)
or, for older cards, ``qup_train.json`` and the ``model-index`` accuracy. From the dataset repo's
``qup_manifest.json`` (at the revision the adapters trained on): per-variant reward and NLL with
their 95% intervals and the prompt template. A study's results dataset is ``<repo>-results``
tagged ``qup-results``.

Example:
    >>> api = HfApi(endpoint="http://127.0.0.1:8080")                          # doctest: +SKIP
    >>> [e.dataset_repo for e in discover(api)]                                # doctest: +SKIP
    ['qup/qup-mawps-smollm2-135m-instruct']
"""
from __future__ import annotations

import json
import logging
import re
import tempfile
from dataclasses import dataclass, field

log = logging.getLogger(__name__)
_TAG_RE = re.compile(r"^v(\d+)$")


@dataclass
class Adapter:
    repo_id: str
    revision: str                      # newest vN tag, else the commit sha
    variant: str
    base_model: str
    dataset_repo: str = ""
    dataset_config: str = ""
    dataset_revision: str = ""
    evals: list[dict] = field(default_factory=list)   # {dataset, split, accuracy[, correct, total]}


@dataclass
class Experiment:
    dataset_repo: str
    base_model: str
    adapters: list[Adapter]
    train_stats: dict[str, dict] = field(default_factory=dict)   # variant -> {reward, nll: {mean, lo, hi, n}}
    prompt: str = "math_cot"
    results_repo: str = ""

    @property
    def variants(self) -> list[str]:
        return [a.variant for a in self.adapters]

    def adapter(self, variant: str) -> Adapter | None:
        return next((a for a in self.adapters if a.variant == variant), None)


def _revision(api, repo_id: str, repo_type: str = "model") -> str:
    """The newest ``vN`` tag (what publishing creates), else the head commit sha."""
    refs = api.list_repo_refs(repo_id, repo_type=repo_type)
    tags = sorted((int(m.group(1)), t.name) for t in refs.tags if (m := _TAG_RE.match(t.name)))
    if tags:
        return tags[-1][1]
    return next((b.target_commit for b in refs.branches if b.name == "main"), "main")


def _json_file(api, repo_id: str, filename: str, revision: str, repo_type: str = "model") -> dict | None:
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = api.hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision, cache_dir=tmp)
        except (EntryNotFoundError, RevisionNotFoundError):
            return None
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    return data if isinstance(data, dict) else None


def _card_evals(card) -> list[dict]:
    """Held-out results of a card: its ``qup.eval`` (with counts), else the ``model-index``."""
    qup = card.to_dict().get("qup") or {}
    if isinstance(qup.get("eval"), list) and qup["eval"]:
        return [e for e in qup["eval"] if isinstance(e, dict) and isinstance(e.get("accuracy"), (int, float))]
    return [{"dataset": r.dataset_name, "split": r.dataset_split, "accuracy": float(r.metric_value)}
            for r in (card.eval_results or []) if r.metric_type == "accuracy"]


def adapter_from_card(api, repo_id: str, card) -> Adapter | None:
    """An :class:`Adapter` from a listed model's card (None when it is not a QUP adapter)."""
    data = card.to_dict()
    qup = data.get("qup") if isinstance(data.get("qup"), dict) else {}
    revision = _revision(api, repo_id)
    if not qup.get("variant"):   # cards published before the qup: block
        qup = _json_file(api, repo_id, "qup_train.json", revision) or {}
        qup = {**qup, "variant": qup.get("dataset_config")}
    datasets = data.get("datasets") or []
    dataset_repo = qup.get("dataset_repo") or (datasets[0] if datasets else "")
    if not qup.get("variant") or not dataset_repo or not isinstance(data.get("base_model"), str):
        return None
    return Adapter(repo_id, revision, str(qup["variant"]), data["base_model"], dataset_repo,
                   str(qup.get("dataset_config") or qup["variant"]), str(qup.get("dataset_revision") or ""),
                   _card_evals(card))


def train_stats(api, dataset_repo: str, revision: str) -> tuple[dict[str, dict], str]:
    """``({variant: {reward, nll}}, prompt template)`` from the dataset repo's manifest."""
    manifest = _json_file(api, dataset_repo, "qup_manifest.json", revision or "main", "dataset") or {}
    out = {}
    for name, entry in (manifest.get("variants") or {}).items():
        stats = (entry or {}).get("stats") or {}
        ci, means = stats.get("diagnostics_ci") or {}, stats.get("diagnostics") or {}
        out[name] = {k: ci[k] if isinstance(ci.get(k), dict) else {"mean": means[k]}
                     for k in ("reward", "nll") if isinstance(ci.get(k), dict) or means.get(k) is not None}
    prompt = (manifest.get("provenance") or {}).get("prompt_template") or "math_cot"
    return out, str(prompt)


def discover(api, author: str = "") -> list[Experiment]:
    """Every experiment with at least one adapter on the Hub behind ``api``, newest names first."""
    groups: dict[str, list[Adapter]] = {}
    for m in api.list_models(filter="qup", cardData=True, author=author or None):
        if m.card_data is None:
            continue
        adapter = adapter_from_card(api, m.id, m.card_data)
        if adapter is not None:
            groups.setdefault(adapter.dataset_repo, []).append(adapter)
    results = {d.id for d in api.list_datasets(filter="qup-results", author=author or None)}
    out = []
    for repo, adapters in sorted(groups.items()):
        adapters.sort(key=lambda a: a.variant)
        revision = next((a.dataset_revision for a in adapters if a.dataset_revision), "")
        try:
            stats, prompt = train_stats(api, repo, revision)
        except Exception as e:  # noqa: BLE001 - a missing/unreadable dataset repo: no reward/NLL shown
            log.warning("experiment %s: no training-data statistics (%s)", repo, type(e).__name__)
            stats, prompt = {}, "math_cot"
        out.append(Experiment(repo, adapters[0].base_model, adapters, stats, prompt,
                              f"{repo}-results" if f"{repo}-results" in results else ""))
    return out


def pick(experiments: list[Experiment], name: str = "") -> Experiment | None:
    """The experiment named ``name`` (its dataset repo), else the one with most adapters."""
    if name:
        return next((e for e in experiments if e.dataset_repo == name), None)
    return max(experiments, key=lambda e: len(e.adapters), default=None)
