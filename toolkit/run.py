"""``qup run``: string the stages together from a YAML recipe. Nothing else lives here.

Stages: sample → verify (the ``self`` variant) → rft → publish data → train + evaluate + publish
adapter per variant → report.
A recipe names the model, the training and held-out problem slices, and one section per stage
(the keys of that stage's config dataclass). Each finished stage leaves a marker with its config
in its output dir, so re-running a recipe skips what is done and resumes what is not.

Example:
    >>> run_recipe("smoke", {"sample": {"k": 2}}, run_dir="runs/smoke")        # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from .config import ConfigError, from_dict, load_config
from .sources import SourceConfig, load_problems
from .stages import publish as publishing
from .stages.evaluate import EvaluateConfig, evaluate_command
from .stages.io import load
from .stages.report import write_report
from .stages.rft import RftConfig, rft_command
from .stages.sample import SampleConfig, sample_command
from .stages.train import TrainConfig, train_command
from .stages.verify import VerifyConfig, verify_command

log = logging.getLogger(__name__)
MARKER = "qup_stage.json"


@dataclass
class Slice:
    source: str
    split: str = "test"
    offset: int = 0
    limit: int | None = None


@dataclass
class HubSection:
    """Where the run publishes: ``url`` (else ``HF_ENDPOINT``, else an embedded Hub under the run dir)."""
    publish: bool = True
    url: str = ""
    org: str = "qup"
    private: bool = False


@dataclass
class RunConfig:
    name: str
    train_problems: Slice
    eval_problems: Slice
    model: str = "tiny-random"
    variants: list[str] = field(default_factory=lambda: ["rft"])  # which data variants to train on
    sample: dict[str, Any] = field(default_factory=dict)
    rft: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    evaluate: dict[str, Any] = field(default_factory=dict)
    hub: HubSection = field(default_factory=HubSection)

    def __post_init__(self):
        unknown = sorted(set(self.variants) - {"self", "rft"})
        if unknown:
            raise ConfigError(f"variants: {unknown} not available yet; choose from ['self', 'rft']")


def recipe_path(recipe: str) -> Path:
    """A packaged recipe name (``smoke``, ``cpu-demo``) or a path to a YAML file."""
    if recipe.endswith((".yaml", ".yml")):
        return Path(recipe)
    res = resources.files("toolkit.recipes") / f"{recipe}.yaml"
    if not res.is_file():
        names = sorted(p.name[:-5] for p in resources.files("toolkit.recipes").iterdir()
                       if p.name.endswith(".yaml"))
        raise ConfigError(f"unknown recipe {recipe!r}; packaged recipes: {names}, or give a .yaml path")
    return Path(str(res))


def stage_configs(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """Every stage's typed config, validated up front so a bad recipe key fails before any work."""
    where = f"recipe {cfg.name}"
    tr, ev = cfg.train_problems, cfg.eval_problems
    out = {"sample": from_dict(SampleConfig, {**cfg.sample, "model": cfg.model, "source": tr.source,
                                              "split": tr.split, "offset": tr.offset, "limit": tr.limit,
                                              "out": str(run_dir / "samples")}, f"{where}: sample"),
           "verify": VerifyConfig(traces=str(run_dir / "samples"), out=str(run_dir / "self")),
           "rft": from_dict(RftConfig, {**cfg.rft, "traces": str(run_dir / "self"),
                                        "out": str(run_dir / "rft")}, f"{where}: rft")}
    prompt = out["sample"].prompt
    evaluate = {**cfg.evaluate, "model": cfg.model, "source": ev.source, "split": ev.split,
                "offset": ev.offset, "limit": ev.limit, "prompt": prompt}
    out["evaluate:base"] = from_dict(EvaluateConfig, {**evaluate, "out": str(run_dir / "eval" / "base")},
                                     f"{where}: evaluate")
    for v in cfg.variants:
        adapter = str(run_dir / "adapters" / v)
        out[f"train:{v}"] = from_dict(TrainConfig, {**cfg.train, "model": cfg.model,
                                                    "data": str(run_dir / v), "out": adapter},
                                      f"{where}: train")
        out[f"evaluate:{v}"] = from_dict(EvaluateConfig, {**evaluate, "adapter": adapter,
                                                          "out": str(run_dir / "eval" / v)},
                                         f"{where}: evaluate")
    return out


def _once(out: str, cfg: Any, fn: Callable[[Any], dict], force: bool = False) -> dict:
    """Run ``fn(cfg)`` unless ``out`` holds a marker from the same config; return its result."""
    marker = Path(out) / MARKER
    want = json.loads(json.dumps(asdict(cfg), default=str))
    if marker.is_file() and not force:
        done = json.loads(marker.read_text())
        if done.get("config") == want:
            log.info("%s: done already, skipping", out)
            return done["result"]
    result = fn(cfg)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"config": want, "result": result}, indent=2, default=str))
    return result


def _marker_field(out: str, key: str):
    marker = Path(out) / MARKER
    return json.loads(marker.read_text()).get(key) if marker.is_file() else None


def _set_marker_field(out: str, key: str, value) -> None:
    marker = Path(out) / MARKER
    marker.write_text(json.dumps({**json.loads(marker.read_text()), key: value}, indent=2, default=str))


def _data_stats(path: str) -> dict:
    ds = load(path)
    n = len(ds)
    return {"rows": n, "problems": len(set(ds["problem_id"])),
            "correct_rate": sum(ds["correct"]) / n if n else 0.0,
            "mean_completion_tokens": sum(ds["completion_tokens"]) / n if n else 0.0}


def run_recipe(recipe: str, overrides: dict | None = None, run_dir: str | None = None) -> dict:
    """Run a recipe end to end; return the run summary (also written to ``run_dir/run.json``)."""
    path = recipe_path(recipe)
    cfg = load_config(RunConfig, path, overrides)
    run = Path(run_dir or Path("runs") / cfg.name)
    stages = stage_configs(cfg, run)
    run.mkdir(parents=True, exist_ok=True)
    # Fail fast on bad sources before any model work.
    for s in (cfg.train_problems, cfg.eval_problems):
        load_problems(SourceConfig(source=s.source, split=s.split, offset=s.offset, limit=s.limit))

    _once(stages["sample"].out, stages["sample"], sample_command)
    _once(stages["verify"].out, stages["verify"], verify_command)
    _once(stages["rft"].out, stages["rft"], rft_command)
    data = {"self": _data_stats(str(run / "self")), "rft": _data_stats(str(run / "rft"))}
    evaluations = {"base": _once(stages["evaluate:base"].out, stages["evaluate:base"], evaluate_command)}
    with publishing.hub_session(cfg.hub, run) as hub:
        published = []
        if hub:
            published.append(publishing.publish_variants(hub, cfg, stages, run))
        for v in cfg.variants:
            if data[v]["rows"] == 0:
                raise ConfigError(f"variant {v!r} has no rows to train on (see {run / v}); sample more "
                                  "problems or traces (sample.k), or train on another variant")
            train_cfg = stages[f"train:{v}"]
            if hub:  # the adapter's card names the exact dataset repo, config and revision
                train_cfg = replace(train_cfg, dataset_repo=published[0]["repo"], dataset_config=v,
                                    dataset_revision=published[0]["revision"])
            trained = _once(train_cfg.out, train_cfg, train_command)
            ev = stages[f"evaluate:{v}"]
            evaluations[v] = _once(ev.out, ev, evaluate_command,  # a retrained adapter is re-evaluated
                                   force=trained["adapter_sha256"] != _marker_field(ev.out, "adapter_sha256"))
            _set_marker_field(ev.out, "adapter_sha256", trained["adapter_sha256"])
            if hub:
                published.append(publishing.publish_trained(hub, cfg, v, train_cfg.out, evaluations[v]))
    summary = {"name": cfg.name, "model": cfg.model, "run_dir": str(run),
               "eval_source": f"{cfg.eval_problems.source}/{cfg.eval_problems.split}",
               "data": data, "evaluations": evaluations, "published": published}
    summary["report"] = str(write_report(run, summary))
    (run / "run.json").write_text(json.dumps(summary, indent=2, default=str))
    _print_table(summary)
    return summary


def _print_table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['name']}: held-out pass@1 on {summary['eval_source']}")
    for col in ("model", "accuracy", "correct / total"):
        table.add_column(col)
    for name, m in summary["evaluations"].items():
        label = "base" if name == "base" else f"base + {name} LoRA"
        table.add_row(label, f"{100 * m['accuracy']:.1f}%", f"{m['correct']} / {m['total']}")
    Console(stderr=True).print(table)
