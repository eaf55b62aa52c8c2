"""The study's results dataset: one row per SLM × variant × seed × benchmark
(:func:`toolkit.schema.results`: with the training data's mean of every registered diagnostic
column), saved in the run dir and published as ``<dataset repo>-results`` (one atomic commit,
tagged ``v<N>``; the card carries the study's findings).

Example:
    >>> from datasets import load_dataset
    >>> ds = load_dataset("qup/qup-mawps-smollm2-135m-instruct-results", split="train")  # doctest: +SKIP
"""
from __future__ import annotations

import io
import math
from pathlib import Path

from ..diagnostics.columns import shown
from ..schema import results
from ..stats import wilson


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
            lo, hi = wilson(m["correct"], m["total"])
            out.append({
                "experiment": p.cfg.name, "slm": info.hub_id, "slm_revision": info.revision or "",
                "variant": v, "lam": getattr(opts, "lam", None) if _selected(v) else None,
                "seed": cell["seed"], "benchmark": Path(ec.problems.source.rstrip("/")).name,
                "split": ec.problems.split, "correct": m["correct"], "total": m["total"],
                "accuracy": m["accuracy"], "ci_low": lo, "ci_high": hi, **figures[v],
                "train_wall_s": timing.get("wall_s", (train.get("metrics") or {}).get("train_runtime")),
                "train_cpu_s": timing.get("cpu_s"), "train_gpu_s": timing.get("gpu_s"),
                "eval_wall_s": (m.get("timing") or {}).get("wall_s"),
                "dataset_repo": data_pub["repo"] if data_pub and v != "base" else "",
                "dataset_config": v if data_pub and v != "base" else "",
                "dataset_revision": data_pub["revision"] if data_pub and v != "base" else "",
                "adapter_repo": adapter.get("repo", ""), "adapter_revision": adapter.get("revision", ""),
            })
    return out


def _selected(name: str) -> bool:
    from .. import variants as V
    return name in V.REGISTRY and V.get(name).scored


def to_dataset(result_rows: list[dict]):
    from datasets import Dataset
    return Dataset.from_list(result_rows, features=results())


def save_rows(result_rows: list[dict], out: Path) -> None:
    from ..io import save
    save(to_dataset(result_rows), str(out))


def publish(hub, p, result_rows: list[dict], summary: dict, data_pub: dict | None) -> dict:
    """Publish the rows as ``<dataset repo>-results`` with a card stating what was found."""
    from huggingface_hub import DatasetCardData

    from ..publishing.experiment import dataset_repo
    from ..publishing.publish import _connect, _publish, sha256
    repo = dataset_repo(hub, p.cfg) + "-results"
    buf = io.BytesIO()
    to_dataset(result_rows).to_parquet(buf)
    card_data = DatasetCardData(
        pretty_name=f"QUP study results: {p.cfg.name}", license="apache-2.0", language=["en"],
        tags=["qup", "qup-results", "math", "reasoning", "distillation"],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]}])
    data_line = (f"Training data: [`{data_pub['repo']}`](https://huggingface.co/datasets/{data_pub['repo']}) "
                 f"at revision `{data_pub['revision']}`.\n\n") if data_pub else ""
    readme = (f"---\n{card_data.to_yaml()}\n---\n\n# QUP study: {p.cfg.name}\n\n"
              "One row per SLM × training-data variant × seed × benchmark: held-out greedy pass@1 "
              "with counts and a Wilson 95% interval, the training data's mean reward (perceived "
              "quality), learner NLL (adaptation cost) and drift, and the exact dataset and adapter "
              f"revisions.\n\n{data_line}```python\nfrom datasets import load_dataset\n"
              f"ds = load_dataset(\"{repo}\", split=\"train\")\n```\n\n" + summary["findings_md"])
    files = {"data/train-00000-of-00001.parquet": buf.getvalue(), "README.md": readme.encode()}
    hub_ = _connect(repo, "dataset", hub.token, hub.endpoint)

    def build(tag, old):
        return files, {"format": 1, "kind": "qup-results",
                       "files": {k: sha256(b) for k, b in sorted(files.items())}}
    r = _publish(hub_, hub.private, None, f"qup: results of study {p.cfg.name}", build)
    return {"repo": repo, "revision": r.tag, "commit": r.commit_sha, "url": r.url}
