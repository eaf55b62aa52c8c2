"""Dataset and model cards for published QUP artifacts, from the Jinja templates in ``dataset_cards/``
(shipped as package data: ``toolkit/publishing/templates`` links to it).

Everything that goes into a card passes :func:`scrub` first: HF tokens, credentials in URLs,
query strings and private endpoints never reach the Hub. Cards contain no timestamps, so the
same inputs render the same bytes (publish relies on this to skip identical re-publishes).

Example:
    >>> scrub({"endpoint": "http://u:p@10.0.0.5:8080/v1?key=x", "hf_token": "hf_abcdefghijkl"})
    {'endpoint': '<local endpoint>', 'hf_token': '[redacted]'}
"""
from __future__ import annotations

import ipaddress
import json
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import urlsplit

from huggingface_hub import (DatasetCard, DatasetCardData, EvalResult, EvalResultEntry, ModelCard, ModelCardData,
                             eval_result_entries_to_yaml)

from .. import protocol as P

TEMPLATES = Path(__file__).parent / "templates"   # package data (a link to the top-level dataset_cards/)
PUBLIC_HOSTS = ("huggingface.co", "hf.co", "api.openai.com", "github.com", "arxiv.org")

_TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{8,}|\b(?:sk|api)-[A-Za-z0-9_-]{16,}|(?i:bearer)\s+[^\s'\",;]+")
_URL_RE = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>)\]`]+")
_SECRET_KEY_RE = re.compile(r"(^|[_-])(token|secret|password|passwd|api[_-]?key|authorization|"
                            r"credentials?|auth)$", re.I)


def variant_docs() -> dict[str, str]:
    """One line per registered variant (the registry is the one place variants are described)."""
    from ..variants import docs
    return docs()


def endpoint_kind(url: str) -> str:
    """``hf-hub`` / ``openai`` for public hosts, ``local`` for loopback/private IPs, else ``self-hosted``."""
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return "self-hosted"
    if host == "huggingface.co" or host.endswith(".huggingface.co") or host == "hf.co":
        return "hf-hub"
    if host == "api.openai.com":
        return "openai"
    if host == "localhost" or host.endswith(".local") or host.endswith(".internal"):
        return "local"
    try:
        ip = ipaddress.ip_address(host)
        return "local" if ip.is_private or ip.is_loopback or ip.is_link_local else "self-hosted"
    except ValueError:
        return "self-hosted"


def _scrub_url(match: re.Match) -> str:
    url = match.group(0)
    trail = url[len(url.rstrip(".,;:!?")):]   # sentence punctuation after the URL stays
    url = url[:len(url) - len(trail)]
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:  # malformed (e.g. brackets in the netloc): drop it whole
        return "<url>"
    if any(host == h or host.endswith("." + h) for h in PUBLIC_HOSTS):
        return f"{parts.scheme}://{host}{parts.path}{trail}"   # no credentials, port, query, fragment
    return f"<{endpoint_kind(url)} endpoint>{trail}"


def scrub_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` without tokens, credentials/queries in URLs, private URLs, or any of ``secrets``."""
    text = _TOKEN_RE.sub("[redacted]", _URL_RE.sub(_scrub_url, text))
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def scrub(obj, secrets: tuple[str, ...] = ()):
    """A deep copy of ``obj`` (JSON-like) safe to publish; secret-named keys become ``[redacted]``."""
    if isinstance(obj, dict):
        return {str(k): "[redacted]" if _SECRET_KEY_RE.search(str(k)) and obj[k] not in (None, "")
                else scrub(v, secrets) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub(v, secrets) for v in obj]
    if isinstance(obj, str):
        return scrub_text(obj, secrets)
    if obj is None or isinstance(obj, (bool, int, float)):
        return obj
    return scrub_text(str(obj), secrets)


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def prompt_texts(prompt_ids) -> dict[str, str]:
    """Text of each ``name@sha`` prompt id whose packaged template still hashes the same."""
    from ..prompts import load_prompt
    out = {}
    for pid in sorted(set(prompt_ids)):
        try:
            template = load_prompt(pid.split("@")[0])
        except Exception:  # unknown/renamed template: the id alone is recorded
            continue
        if template.id == pid:
            out[pid] = template.text
    return out


def size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def _fmt(value) -> str:
    if value is None:
        return "—"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def render_dataset_card(repo_id: str, tag: str, variants: dict[str, dict], provenance: dict,
                        source_info: dict, data_files: dict[str, str]) -> str:
    """README.md text of a trace dataset repo; ``variants`` maps config name → :func:`toolkit.stats.trace_stats`.

    ``provenance`` and ``source_info`` must already be scrubbed; ``data_files`` maps config → glob.
    """
    names = sorted(variants)
    diag_cols = sorted({c for s in variants.values() for c in s.get("diagnostics", {})})
    header = ["config", "rows", "problems", "correct rate", "mean completion tokens"] + \
             [f"mean {c}" for c in diag_cols]
    rows = [[f"`{n}`", _fmt(s["rows"]), _fmt(s["problems"]), _fmt(s["correct_rate"]),
             _fmt(s["mean_completion_tokens"])] + [_fmt(s["diagnostics"].get(c)) for c in diag_cols]
            for n, s in ((n, variants[n]) for n in names)]
    from ..diagnostics.tables import markdown_table, table_markdown
    table = "\n".join(markdown_table(header, rows))
    scored = {n: variants[n]["diagnostics_ci"] for n in names if variants[n].get("diagnostics_ci")}
    diagnostics = "\n".join(table_markdown(scored)) if scored else ""
    reward_source = ", ".join(sorted({f"`{r}`" for s in variants.values() for r in s.get("reward_models", [])}))
    source = source_info.get("dataset") or ""
    card_data = DatasetCardData(
        pretty_name=source_info.get("pretty_name") or f"QUP traces: {repo_id.split('/')[-1]}",
        license=source_info.get("license", "other"),
        language=["en"],
        task_categories=["text-generation", "question-answering"],
        tags=["math", "reasoning", "synthetic", "distillation", "qup"],
        size_categories=[size_category(sum(s["rows"] for s in variants.values()))],
        source_datasets=[source] if source.count("/") == 1 else None,
        configs=[{"config_name": n, "data_files": [{"split": "train", "path": data_files[n]}]}
                 for n in names],
    )
    card = DatasetCard.from_template(
        card_data, template_path=str(TEMPLATES / "dataset_card.md.j2"),
        repo_id=repo_id, tag=tag, variants=variants, variant_names=names, variant_doc=variant_docs(),
        stats_table=table, diagnostics_table=diagnostics, reward_source=reward_source, provenance=provenance, source_info=source_info,
        provenance_json=json.dumps(provenance, indent=2, sort_keys=True),
        math_verify_version=package_version("math-verify"),
        toolkit_version=package_version("qup-toolkit"),
        example_config="rft" if "rft" in variants else names[0],
        prompt_texts=prompt_texts(p for s in variants.values() for p in s.get("prompt_ids", [])),
    )
    return str(card)


def qup_card_fields(train: dict, eval_results: list[dict]) -> dict:
    """The card's ``qup:`` YAML block, read by the Space: variant, exact training data and held-out
    counts (the ``model-index`` holds the accuracy only).

    >>> qup_card_fields({"dataset_repo": "o/d", "dataset_config": "rft", "dataset_revision": "v1"},
    ...                 [{"dataset": "mawps", "split": "test", "accuracy": 0.5, "correct": 1, "total": 2}])
    {'variant': 'rft', 'dataset_repo': 'o/d', 'dataset_config': 'rft', 'dataset_revision': 'v1', 'eval': [{'dataset': 'mawps', 'split': 'test', 'accuracy': 0.5, 'correct': 1, 'total': 2}]}
    """
    out = {"variant": train.get("dataset_config") or None}
    out.update({k: train[k] for k in ("dataset_repo", "dataset_config", "dataset_revision") if train.get(k)})
    out["eval"] = [{k: r[k] for k in ("dataset", "split", "accuracy", "correct", "total", "metric", "protocol_id")
                    if r.get(k) is not None} for r in eval_results]
    return {k: v for k, v in out.items() if v not in (None, [])}


# benchmarks by their Hub dataset ids (``.eval_results`` entries name the benchmark dataset)
BENCHMARK_IDS = {"gsm8k": "openai/gsm8k", "math500": "HuggingFaceH4/MATH-500"}


def _scores(r: dict) -> list[tuple[str, float]]:
    """``(metric label, value)`` of an evaluation: its headline, then pass@k/maj@k beyond pass@1."""
    protocol = r.get("protocol") or {}
    out = [(r.get("metric") or "pass@1 (greedy)", float(r["accuracy"]))]
    for name, v in sorted((r.get("scores") or {}).items()):
        if name != "pass@1" and isinstance(v, dict) and isinstance(v.get("value"), (int, float)):
            out.append((P.metric_label(protocol, name), float(v["value"])))
    return out


def model_index(eval_results: list[dict]) -> list[EvalResult]:
    """``model-index`` results: one per score, the protocol in ``dataset.args``."""
    return [EvalResult(
        task_type="text-generation", task_name="Math word problems",
        dataset_type=str(r.get("dataset_id") or BENCHMARK_IDS.get(r["dataset"], r["dataset"])),
        dataset_name=str(r["dataset"]), dataset_split=r.get("split"), dataset_revision=r.get("revision"),
        dataset_args=P.dataset_args(r["protocol"]) if r.get("protocol") else None,
        metric_type="accuracy", metric_name=label, metric_value=value,
    ) for r in eval_results for label, value in _scores(r)]


def eval_results_files(eval_results: list[dict]) -> dict[str, bytes]:
    """``.eval_results/<benchmark>.yaml`` (Hugging Face's evaluation-results format): one entry
    per score, ``notes`` stating the metric and its protocol.

    >>> files = eval_results_files([{"dataset": "gsm8k", "split": "test", "accuracy": 0.25}])
    >>> print(files[".eval_results/gsm8k.yaml"].decode().strip())
    - dataset:
        id: openai/gsm8k
        task_id: gsm8k
      notes: pass@1 (greedy), test split; protocol not recorded
      value: 0.25
    """
    import yaml
    by: dict[str, list[EvalResultEntry]] = {}
    for r in eval_results:
        bench = _slug_name(str(r["dataset"]))
        protocol = r.get("protocol")
        where = f"{r['split']} split; " if r.get("split") else ""
        for label, value in _scores(r):
            note = f"{label}, {where}" + (f"protocol {protocol.get('protocol_id')}: {P.notes(protocol)}"
                                          if protocol else "protocol not recorded")
            by.setdefault(bench, []).append(EvalResultEntry(
                dataset_id=str(r.get("dataset_id") or BENCHMARK_IDS.get(r["dataset"], r["dataset"])),
                task_id=bench, value=value, dataset_revision=r.get("revision"), notes=note))
    return {f".eval_results/{b}.yaml": yaml.safe_dump(eval_result_entries_to_yaml(e), sort_keys=True).encode()
            for b, e in by.items()}


def _slug_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(name.rstrip("/")).name).strip("-") or "benchmark"


def protocol_rows(eval_results: list[dict]) -> tuple[list[str], str]:
    """One protocol line per evaluation, and a warning when their decisive fields differ."""
    recs = [r.get("protocol") for r in eval_results]
    lines = [f"{r['dataset']}: " + (f"`{p['protocol_id']}` {P.notes(p)}" if p else "not recorded")
             for r, p in zip(eval_results, recs)]
    known = [p for p in recs if p]
    diffs = sorted({d for p in known[1:] for d in P.differences(known[0], p)})
    warn = ("**These scores were obtained with different protocols and are not one column**: "
            + "; ".join(diffs)) if diffs else ""
    return lines, warn


def render_model_card(repo_id: str, tag: str, train: dict, eval_results: list[dict]) -> str:
    """README.md text of a LoRA adapter repo; ``train`` is the scrubbed ``qup_train.json``."""
    results = model_index(eval_results)
    dataset_repo = train.get("dataset_repo")
    card_data = ModelCardData(
        base_model=train["base_model"], base_model_relation="adapter", library_name="peft",
        datasets=[dataset_repo] if dataset_repo else None, license=train.get("license", "apache-2.0"),
        language=["en"], pipeline_tag="text-generation",
        tags=["peft", "lora", "sft", "trl", "math", "reasoning", "qup"],
        model_name=repo_id.split("/")[-1], eval_results=results or None,
        **({"base_model_revision": train["base_model_revision"]} if train.get("base_model_revision") else {}),
        qup=qup_card_fields(train, eval_results),
    )
    card = ModelCard.from_template(
        card_data, template_path=str(TEMPLATES / "model_card.md.j2"),
        repo_id=repo_id, tag=tag, train=train, eval_results_list=eval_results,
        protocol_lines=protocol_rows(eval_results)[0], protocol_warning=protocol_rows(eval_results)[1],
        config_json=json.dumps(train.get("config", {}), indent=2, sort_keys=True),
        metrics={k: v for k, v in train.get("metrics", {}).items() if not isinstance(v, (list, dict))},
        peft_version=package_version("peft"),
        toolkit_version=package_version("qup-toolkit"),
    )
    return str(card)
