"""Find the experiments on a Hub: nothing is hard-coded, everything comes from what publishing wrote.

An experiment is a trace dataset repo; its adapters are the model repos tagged ``qup`` whose card
lists it under ``datasets:`` (``HfApi.list_models(filter=["qup", "dataset:<repo>"])``). From each
adapter card: ``base_model``, the ``qup:`` block (variant, exact training data, held-out counts)
or, for older cards, ``qup_train.json`` and the ``model-index`` accuracy. From the dataset repo's
``qup_manifest.json`` (at the revision the adapters trained on): per-variant reward and NLL with
their 95% intervals and the prompt template. A study's results dataset is ``<repo>-results``
tagged ``qup-results``.

Trust: cards are input from whoever could write them. With ``author`` (the Space's owner, see
:func:`owner`) only that namespace's cards are read, and a card naming a dataset repo outside it is
skipped. A card that is not well-formed (variant not a plain name, ``base_model`` not a Hub id or
preset, no adapter files, ill-typed counts) is logged and skipped; it never stops the Space.

Example:
    >>> api = HfApi(endpoint="http://127.0.0.1:8080")                          # doctest: +SKIP
    >>> [e.dataset_repo for e in discover(api)]                                # doctest: +SKIP
    ['qup/qup-mawps-smollm2-135m-instruct']
"""
from __future__ import annotations

import json
import logging
import math
import re
import tempfile
from dataclasses import dataclass, field

from ..models import ADAPTER_CONFIG, ADAPTER_WEIGHTS

log = logging.getLogger(__name__)
_TAG_RE = re.compile(r"^v(\d+)$")
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")          # a variant (an adapter name in PEFT)
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]{0,99}")        # a benchmark's dataset / split name
_METRIC = re.compile(r"[a-z]+@\d{1,4} \([A-Za-z0-9=.,_ ]{1,80}\)")    # a score's name, as evaluate writes it
WEIGHTS = (ADAPTER_WEIGHTS, "adapter_model.bin")


class BadCard(ValueError):
    """A QUP card the Space cannot use (logged and skipped)."""


def is_repo_id(value) -> bool:
    """``namespace/name`` as the Hub spells repo ids (no path tricks)."""
    return isinstance(value, str) and bool(_REPO_ID.fullmatch(value)) and ".." not in value


def owner(settings, api) -> str:
    """The namespace the Space trusts: ``QUP_SPACE_AUTHOR``, else the namespace of its own repo
    (``SPACE_ID``, set on Hugging Face Spaces), else its token's user; "" when none is known."""
    if settings.author:
        return settings.author
    if settings.space_id:
        return settings.space_id.split("/")[0]
    if settings.token:
        try:
            return str(api.whoami()["name"])
        except Exception as e:  # noqa: BLE001 - an unusable token: no owner
            log.warning("cannot tell the Space's owner from its token (%s)", type(e).__name__)
    return ""


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


def newest_revision(api, repo_id: str, repo_type: str = "model") -> str:
    """The newest ``vN`` tag (what publishing creates), else the head commit sha."""
    refs = api.list_repo_refs(repo_id, repo_type=repo_type)
    tags = sorted((int(m.group(1)), t.name) for t in refs.tags if (m := _TAG_RE.match(t.name)))
    if tags:
        return tags[-1][1]
    return next((b.target_commit for b in refs.branches if b.name == "main"), "main")


def hub_file(api, repo_id: str, filename: str, revision: str, repo_type: str = "model",
             limit: int = -1) -> bytes | None:
    """The first ``limit`` bytes (all with -1) of a repo file at ``revision``; None when absent."""
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = api.hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision, cache_dir=tmp)
        except (EntryNotFoundError, RevisionNotFoundError):
            return None
        with open(path, "rb") as f:
            return f.read(limit)


def _json_file(api, repo_id: str, filename: str, revision: str, repo_type: str = "model") -> dict | None:
    raw = hub_file(api, repo_id, filename, revision, repo_type)
    data = json.loads(raw) if raw is not None else None
    return data if isinstance(data, dict) else None


def _eval(e) -> dict | None:
    """One held-out result with checked types: accuracy in [0, 1], 0 <= correct <= total."""
    if not isinstance(e, dict):
        return None
    acc, correct, total = e.get("accuracy"), e.get("correct"), e.get("total")
    if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0 <= acc <= 1:
        return None
    out = {k: e[k] for k in ("dataset", "split", "protocol_id") if isinstance(e.get(k), str) and _LABEL.fullmatch(e[k])}
    if isinstance(e.get("metric"), str) and _METRIC.fullmatch(e["metric"]):     # "pass@1 (n=4, T=0.6, top_p=0.95)"
        out["metric"] = e["metric"]
    out["accuracy"] = float(acc)
    if all(isinstance(x, int) and not isinstance(x, bool) for x in (correct, total)) and 0 <= correct <= total:
        out.update(correct=correct, total=total)
    return out


def _card_evals(card) -> list[dict]:
    """Held-out results of a card: its ``qup.eval`` (with counts), else the ``model-index``."""
    qup = card.to_dict().get("qup") or {}
    if isinstance(qup, dict) and isinstance(qup.get("eval"), list) and qup["eval"]:
        return [e for e in map(_eval, qup["eval"]) if e is not None]
    rows = [{"dataset": r.dataset_name, "split": r.dataset_split, "accuracy": r.metric_value}
            for r in (card.eval_results or []) if r.metric_type == "accuracy"]
    return [e for e in map(_eval, rows) if e is not None]


def _check(api, repo_id: str, revision: str, variant, base_model, dataset_repo, author: str) -> None:
    """:class:`BadCard` naming what makes an adapter card unusable."""
    if not isinstance(variant, str) or not _NAME.fullmatch(variant):
        raise BadCard(f"variant {str(variant)[:80]!r} is not a plain name (letters, digits, '_', '-')")
    from ..models import PRESETS
    if not (is_repo_id(base_model) or base_model in PRESETS):
        raise BadCard(f"base_model {str(base_model)[:80]!r} is not a Hub repo id")
    if not is_repo_id(dataset_repo):
        raise BadCard(f"dataset {str(dataset_repo)[:80]!r} is not a Hub repo id")
    if author and dataset_repo.split("/")[0] != author:
        raise BadCard(f"dataset {dataset_repo} is outside the Space's namespace {author!r}")
    files = set(api.list_repo_files(repo_id, revision=revision))
    if ADAPTER_CONFIG not in files or not files & set(WEIGHTS):
        raise BadCard(f"no adapter files ({ADAPTER_CONFIG} + {' or '.join(WEIGHTS)}) at {revision}")


def adapter_from_card(api, repo_id: str, card, author: str = "") -> Adapter | None:
    """An :class:`Adapter` from a listed model's card (None when it is not a QUP adapter;
    :class:`BadCard` when it is one the Space cannot use, see :func:`_check`)."""
    data = card.to_dict()
    qup = data.get("qup") if isinstance(data.get("qup"), dict) else {}
    revision = newest_revision(api, repo_id)
    if not qup.get("variant"):   # cards published before the qup: block
        qup = _json_file(api, repo_id, "qup_train.json", revision) or {}
        qup = {**qup, "variant": qup.get("dataset_config")}
    datasets = data.get("datasets") if isinstance(data.get("datasets"), list) else []
    dataset_repo = qup.get("dataset_repo") or (datasets[0] if datasets else "")
    if not qup.get("variant") or not dataset_repo or not isinstance(data.get("base_model"), str):
        return None
    _check(api, repo_id, revision, qup["variant"], data["base_model"], dataset_repo, author)
    config, dataset_revision = qup.get("dataset_config") or qup["variant"], qup.get("dataset_revision") or ""
    if not isinstance(config, str) or not isinstance(dataset_revision, str):
        raise BadCard("dataset_config / dataset_revision must be strings")
    return Adapter(repo_id, revision, qup["variant"], data["base_model"], dataset_repo, config,
                   dataset_revision, _card_evals(card))


def _stat(value) -> dict | None:
    """``{mean[, lo, hi, n]}`` with finite numbers only; None without a mean."""
    if not isinstance(value, dict):
        return None
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
    out = {k: float(value[k]) for k in ("mean", "lo", "hi") if number(value.get(k))}
    if isinstance(value.get("n"), int) and not isinstance(value["n"], bool):
        out["n"] = value["n"]
    return out if "mean" in out else None


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def train_stats(api, dataset_repo: str, revision: str) -> tuple[dict[str, dict], str]:
    """``({variant: {reward, nll}}, prompt template)`` from the dataset repo's manifest."""
    manifest = _json_file(api, dataset_repo, "qup_manifest.json", revision or "main", "dataset") or {}
    out = {}
    for name, entry in _dict(manifest.get("variants")).items():
        stats = _dict(_dict(entry).get("stats"))
        ci, means = _dict(stats.get("diagnostics_ci")), _dict(stats.get("diagnostics"))
        got = {k: _stat(ci.get(k)) or _stat({"mean": means.get(k)}) for k in ("reward", "nll")}
        out[str(name)] = {k: v for k, v in got.items() if v}
    prompt = _dict(manifest.get("provenance")).get("prompt_template")
    return out, prompt if isinstance(prompt, str) and _NAME.fullmatch(prompt) else "math_cot"


def _experiment(api, repo: str, adapters: list[Adapter], results: set[str]) -> Experiment:
    """One experiment: the adapters on its most common base model, one per variant."""
    bases = [a.base_model for a in adapters]
    base = max(sorted(set(bases)), key=bases.count)
    kept: dict[str, Adapter] = {}
    for a in sorted(adapters, key=lambda a: (a.variant, a.repo_id)):
        if a.base_model != base or a.variant in kept:
            log.warning("experiment %s: skipping %s (base %s, variant %s already shown or another base)",
                        repo, a.repo_id, a.base_model, a.variant)
            continue
        kept[a.variant] = a
    revision = next((a.dataset_revision for a in kept.values() if a.dataset_revision), "")
    try:
        stats, prompt = train_stats(api, repo, revision)
    except Exception as e:  # noqa: BLE001 - a missing/unreadable dataset repo: no reward/NLL shown
        log.warning("experiment %s: no training-data statistics (%s)", repo, type(e).__name__)
        stats, prompt = {}, "math_cot"
    return Experiment(repo, base, list(kept.values()), stats, prompt,
                      f"{repo}-results" if f"{repo}-results" in results else "")


def discover(api, author: str = "") -> list[Experiment]:
    """Every experiment with at least one adapter on the Hub behind ``api`` (of namespace
    ``author`` when given), by dataset repo; a card the Space cannot use is logged and skipped."""
    groups: dict[str, list[Adapter]] = {}
    for m in api.list_models(filter="qup", cardData=True, author=author or None):
        if m.card_data is None or (author and m.id.split("/")[0] != author):
            continue
        try:
            adapter = adapter_from_card(api, m.id, m.card_data, author)
        except Exception as e:  # noqa: BLE001 - one bad card never stops the Space
            log.warning("skipping the card of %s: %s", m.id, str(e)[:200] or type(e).__name__)
            continue
        if adapter is not None:
            groups.setdefault(adapter.dataset_repo, []).append(adapter)
    results = {d.id for d in api.list_datasets(filter="qup-results", author=author or None)}
    return [_experiment(api, repo, adapters, results) for repo, adapters in sorted(groups.items())]


def pick(experiments: list[Experiment], name: str = "") -> Experiment | None:
    """The experiment named ``name`` (its dataset repo), else the one with most adapters."""
    if name:
        return next((e for e in experiments if e.dataset_repo == name), None)
    return max(experiments, key=lambda e: len(e.adapters), default=None)
