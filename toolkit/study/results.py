"""The study's results dataset: one row per SLM × variant × seed × benchmark
(:func:`toolkit.schema.results`: with the training data's mean of every registered diagnostic
column), saved in the run dir and published as ``<dataset repo>-results`` (one atomic commit,
tagged ``v<N>``; the card carries the study's findings, ``report.md`` and ``paradox.png`` the whole
report).

Example:
    >>> from datasets import load_dataset
    >>> ds = load_dataset("qup/qup-mawps-smollm2-135m-instruct-results", split="train")  # doctest: +SKIP
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

from ..diagnostics.columns import shown
from ..schema import DETAILS, REPORT_FILES, results
from ..stats import wilson

REPORT, PLOT = REPORT_FILES


def _mean(values) -> float | None:
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    return sum(xs) / len(xs) if xs else None


def _data_figures(path: str | None) -> dict:
    """Rows, tokens and the mean of every shown diagnostic column of a variant's (scored) training data."""
    diagnostics = [c.name for c in shown()]
    if not path:
        return {"train_rows": 0, "train_tokens": 0, **dict.fromkeys(diagnostics)}
    from ..io import load
    ds = load(path)
    cols = set(ds.column_names)
    out = {"train_rows": len(ds), "train_tokens": int(sum(ds["completion_tokens"])) if len(ds) else 0}
    for c in diagnostics:
        out[c] = _mean(ds[c]) if c in cols else None
    return out


def rows(p, cells: list[dict], data_pub: dict | None) -> list[dict]:
    """The results rows of a finished study (``p``: :class:`toolkit.run.Prepared`)."""
    from ..models import model_info
    info = model_info(p.cfg.model)
    figures = {}
    out = []
    for cell in cells:
        v = cell["variant"]
        if v not in figures:
            figures[v] = _data_figures(None if v == "base" else p.built[v])
        train = cell.get("train_result") or {}
        timing = train.get("timing") or {}
        opts = p.cfg.variant_options.get(v)
        adapter = cell.get("adapter_pub") or {}
        for (_, ec), m in zip(cell["evals"], cell["metrics"]):
            lo, hi = (m["ci_low"], m["ci_high"]) if m.get("ci_low") is not None else wilson(m["correct"], m["total"])
            out.append({
                "experiment": p.cfg.name, "slm": info.hub_id, "slm_revision": info.revision or "",
                "variant": v, "lam": opts.lam if _selected(v) and opts.criterion == "reward_nll" else None,
                "seed": cell["seed"], "benchmark": Path(ec.problems.source.rstrip("/")).name,
                "split": ec.problems.split, "correct": m["correct"], "total": m["total"],
                "accuracy": m["accuracy"], "ci_low": lo, "ci_high": hi,
                "metric": m.get("metric") or "pass@1 (greedy)", "scores": json.dumps(m.get("scores") or {}),
                "protocol_id": m.get("protocol_id") or "", "protocol": _public(m.get("protocol")), **figures[v],
                "train_wall_s": timing.get("wall_s", (train.get("metrics") or {}).get("train_runtime")),
                "train_cpu_s": timing.get("cpu_s"), "train_gpu_s": timing.get("gpu_s"),
                "eval_wall_s": (m.get("timing") or {}).get("wall_s"),
                "dataset_repo": data_pub["repo"] if data_pub and v != "base" else "",
                "dataset_config": v if data_pub and v != "base" else "",
                "dataset_revision": data_pub["revision"] if data_pub and v != "base" else "",
                "adapter_repo": adapter.get("repo", ""), "adapter_revision": adapter.get("revision", ""),
            })
    return out


def _public(protocol: dict | None) -> str:
    """The protocol as JSON without local paths (the adapter is named by its weights digest)."""
    if not protocol:
        return ""
    from ..protocol import dataset_args
    return json.dumps({k: protocol[k] for k in protocol if k in dataset_args(protocol)}, sort_keys=True)


def details(cells: list[dict], experiment: str) -> list[dict]:
    """The ``details`` rows (:data:`toolkit.schema.DETAILS`): each evaluation's per-sample outputs."""
    from ..io import load
    out = []
    for cell in cells:
        for (_, ec), m in zip(cell["evals"], cell["metrics"]):
            keep = {"experiment": experiment, "variant": cell["variant"], "seed": cell["seed"],
                    "benchmark": Path(ec.problems.source.rstrip("/")).name, "split": ec.problems.split,
                    "protocol_id": m.get("protocol_id") or ""}
            out += [{**keep, **{k: r[k] for k in DETAILS if k in r and k not in keep}} for r in load(ec.out)]
    return out


def _selected(name: str) -> bool:
    from .. import variants as V
    return name in V.registry() and V.get(name).scored


def to_dataset(result_rows: list[dict]):
    from datasets import Dataset
    return Dataset.from_list(result_rows, features=results())


def save_rows(result_rows: list[dict], out: Path) -> None:
    from ..io import save
    save(to_dataset(result_rows), str(out))


def publish(hub, p, result_rows: list[dict], summary: dict, data_pub: dict | None,
            details_rows: list[dict] | None = None) -> dict:
    """Publish the rows as ``<dataset repo>-results`` with a card stating what was found, and the
    whole report beside them (``report.md``, ``paradox.png``: what the Space shows)."""
    from ..publishing.experiment import dataset_repo
    report = {name: Path(summary[key]).read_bytes() for key, name in (("report", REPORT), ("plot", PLOT))
              if summary.get(key)}
    return publish_results(hub, dataset_repo(hub, p.cfg) + "-results", p.cfg.name, result_rows,
                           summary["findings_md"], data_pub, details_rows, report)


def publish_results(hub, repo: str, name: str, result_rows: list[dict], findings_md: str,
                    data_pub: dict | None = None, details_rows: list[dict] | None = None,
                    report: dict[str, bytes] | None = None) -> dict:
    """One tagged commit of the results (config ``default``), when given every evaluated sample
    (config ``details``, :data:`toolkit.schema.DETAILS`) and the report's files (``{name: bytes}``)."""
    from datasets import Dataset
    from huggingface_hub import DatasetCardData

    from ..publishing.publish import _connect, _publish, sha256
    buf = io.BytesIO()
    to_dataset(result_rows).to_parquet(buf)
    files = {"data/train-00000-of-00001.parquet": buf.getvalue()}
    configs = [{"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]}]
    if details_rows:
        buf = io.BytesIO()
        Dataset.from_list(details_rows, features=DETAILS).to_parquet(buf)
        files["details/train-00000-of-00001.parquet"] = buf.getvalue()
        configs.append({"config_name": "details", "data_files": [{"split": "train", "path": "details/*.parquet"}]})
    card_data = DatasetCardData(
        pretty_name=f"QUP study results: {name}", license="apache-2.0", language=["en"],
        tags=["qup", "qup-results", "math", "reasoning", "distillation"], configs=configs)
    data_line = (f"Training data: [`{data_pub['repo']}`](https://huggingface.co/datasets/{data_pub['repo']}) "
                 f"at revision `{data_pub['revision']}`.\n\n") if data_pub else ""
    readme = (f"---\n{card_data.to_yaml()}\n---\n\n# QUP study: {name}\n\n"
              "One row per SLM × training-data variant × seed × benchmark: the held-out score (`metric` "
              "names it: greedy pass@1, or pass@1 from n samples) with counts and a 95% interval, every "
              "pass@k/maj@k (`scores`), the evaluation protocol (`protocol`, compared by `protocol_id`), "
              "the training data's mean reward (perceived quality), learner NLL (adaptation cost) and "
              "drift, and the exact dataset and adapter revisions."
              + (" Config `details`: every evaluated sample (question, output, extracted answer, verdict)."
                 if details_rows else "") + f"\n\n{data_line}" + protocol_section(result_rows)
              + f"```python\nfrom datasets import load_dataset\n"
              f"ds = load_dataset(\"{repo}\", split=\"train\")\n```\n\n" + findings_md
              + (f"\nThe whole report (tables per benchmark, paired comparisons, prediction, compute): "
                 f"[`{REPORT}`]({REPORT}).\n" if report and REPORT in report else ""))
    files.update(report or {})
    files["README.md"] = readme.encode()
    hub_ = _connect(repo, "dataset", hub.token, hub.endpoint)

    def build(tag, old):
        return files, {"format": 1, "kind": "qup-results",
                       "files": {k: sha256(b) for k, b in sorted(files.items())}}
    r = _publish(hub_, hub.private, None, f"qup: results of study {name}", build)
    return {"repo": repo, "revision": r.tag, "commit": r.commit_sha, "url": r.url}


def protocol_section(result_rows: list[dict]) -> str:
    """Markdown: each benchmark's protocol(s); a warning where one benchmark's rows differ.

    >>> print(protocol_section([{"benchmark": "gsm8k", "protocol_id": "a", "protocol": '{"shots": "0"}'},
    ...                         {"benchmark": "gsm8k", "protocol_id": "b", "protocol": '{"shots": "5"}'}]))
    ## Evaluation protocol
    <BLANKLINE>
    - `gsm8k`: **2 protocols: these scores are not one column** (shots: 0 vs 5); `a` {"shots": "0"}; `b` {"shots": "5"}
    <BLANKLINE>
    <BLANKLINE>
    """
    from ..protocol import differences
    by: dict[str, dict[str, dict]] = {}
    for r in result_rows:
        rec = json.loads(r.get("protocol") or "{}")
        by.setdefault(r["benchmark"], {})[r.get("protocol_id") or "unrecorded"] = rec
    lines = ["## Evaluation protocol", ""]
    for bench, recs in by.items():
        items = "; ".join(f"`{pid}` {json.dumps(rec, sort_keys=True)}" for pid, rec in recs.items())
        if len(recs) > 1:
            first, *rest = recs.values()
            diffs = sorted({d for rec in rest for d in differences(first, rec)})
            lines.append(f"- `{bench}`: **{len(recs)} protocols: these scores are not one column** "
                         f"({'; '.join(diffs)}); {items}")
        else:
            lines.append(f"- `{bench}`: {items}")
    return "\n".join(lines) + "\n\n"
