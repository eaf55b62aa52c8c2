"""``qup run``: string the stages together from a YAML recipe. Nothing else lives here.

sample → each variant in the recipe's lineage (``self`` = verified samples, ``rft``, ... from
:mod:`toolkit.variants`) → publish them as one Hub dataset → per trained variant: train, evaluate,
publish the adapter → report. Every step is cached by a key that chains through its inputs
(:mod:`toolkit.steps`): a change anywhere re-runs that step and everything downstream of it, a
killed run resumes, and nothing stale is reported as done.

A recipe names the SLM (``model``), the ``oracle`` role (for the Oracle variants), the ``prompt`` template, the ``dtype``, the training and
held-out problem slices (``train_problems``/``eval_problems``, source configs), the ``variants`` to
train, one section per stage (``sample``, ``train``, ``evaluate``: the stage configs minus what
the run sets), one section per variant with options (e.g. ``rft: {max_per_problem: 2}``) and
``hub``. Run dir: ``samples/``, ``variants/<name>/``, ``adapters/<name>/``, ``eval/<name>/``,
``report.md``, ``report.png``, ``run.json``.

Example:
    >>> run_recipe("smoke", {"sample": {"k": 2}}, run_dir="runs/smoke")        # doctest: +SKIP
"""
from __future__ import annotations

import functools
import json
import logging
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from . import variants as V
from .config import ConfigError, from_dict, merge, read_yaml, section
from .generation.roles import VOLATILE, RoleConfig
from .io import load, save
from .publishing import experiment as publishing
from .report import write_report
from .sources import SourceConfig, load_problems
from .stages.evaluate import EvaluateConfig, evaluate_command
from .stages.sample import SampleConfig, sample_command
from .stages.train import RUN_FILE, TrainConfig, train_command
from .stats import trace_stats
from .steps import Step, run_step

log = logging.getLogger(__name__)

_TOP = "the recipe's top-level `{}`"
SampleSection = section(SampleConfig, {
    "model": _TOP.format("model"), "problems": _TOP.format("train_problems"),
    "prompt": _TOP.format("prompt"), "dtype": _TOP.format("dtype"), "out": "the run dir"})
TrainSection = section(TrainConfig, {
    "model": _TOP.format("model"), "dtype": _TOP.format("dtype"), "data": "the variant's dir",
    "out": "the run dir", "dataset_repo": "publishing", "dataset_revision": "publishing",
    "dataset_config": "publishing"})
EvaluateSection = section(EvaluateConfig, {
    "model": _TOP.format("model"), "adapter": "the trained variant",
    "problems": _TOP.format("eval_problems"), "dtype": _TOP.format("dtype"),
    "prompt": _TOP.format("prompt") + ": evaluation uses the sampling prompt",
    "out": "the run dir"})


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
    train_problems: SourceConfig
    eval_problems: SourceConfig
    model: str = "tiny-random"                      # the SLM (the learner)
    oracle: RoleConfig = field(default_factory=RoleConfig)  # the Oracle role ('' = none)
    prompt: str = "math_cot"
    dtype: str = "auto"
    variants: list[str] = field(default_factory=lambda: ["rft"])  # which data variants to train on
    sample: SampleSection = field(default_factory=SampleSection)
    train: TrainSection = field(default_factory=TrainSection)
    evaluate: EvaluateSection = field(default_factory=EvaluateSection)
    hub: HubSection = field(default_factory=HubSection)
    variant_options: dict[str, Any] = field(default_factory=dict)  # from top-level <variant>: keys

    def __post_init__(self):
        if not self.variants:
            raise ConfigError("variants: list at least one variant to train on")
        for name in self.variants:
            V.get(name)
        unknown = sorted(set(self.variant_options) - set(V.REGISTRY))
        if unknown:
            raise ConfigError(f"unknown variant section(s) {unknown}; registered: {sorted(V.REGISTRY)}")
        self.variant_options = {v.name: v.options(self.variant_options.get(v.name), v.name)
                                for v in V.lineage(*self.variants)}


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


def load_recipe(recipe: str, overrides: dict | None = None) -> RunConfig:
    """The recipe (name or path) with ``overrides``, validated; top-level keys named after a
    registered variant are that variant's options."""
    path = recipe_path(recipe)
    cfg = merge(read_yaml(path), overrides or {})
    opts = {k: cfg.pop(k) for k in list(cfg) if k in V.REGISTRY}
    cfg["variant_options"] = {**cfg.get("variant_options", {}), **opts}
    return from_dict(RunConfig, cfg, f"recipe {path.stem}")


def stage_configs(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """Every stage's typed config, validated up front so a bad value fails before any work."""
    where = f"recipe {cfg.name}"
    run = {"model": cfg.model, "dtype": cfg.dtype}
    out = {"sample": from_dict(SampleConfig, {**asdict(cfg.sample), **run, "prompt": cfg.prompt,
                                              "problems": cfg.train_problems,
                                              "out": str(run_dir / "samples")}, f"{where}: sample")}
    evaluate = {**asdict(cfg.evaluate), **run, "prompt": cfg.prompt, "problems": cfg.eval_problems}
    out["evaluate:base"] = from_dict(EvaluateConfig, {**evaluate, "out": str(run_dir / "eval" / "base")},
                                     f"{where}: evaluate")
    for v in cfg.variants:
        adapter = str(run_dir / "adapters" / v)
        out[f"train:{v}"] = from_dict(TrainConfig, {**asdict(cfg.train), **run, "data": variant_dir(run_dir, v),
                                                    "out": adapter}, f"{where}: train")
        out[f"evaluate:{v}"] = from_dict(EvaluateConfig, {**evaluate, "adapter": adapter,
                                                          "out": str(run_dir / "eval" / v)},
                                         f"{where}: evaluate")
    return out


def variant_dir(run_dir: Path, name: str) -> str:
    return str(Path(run_dir) / "variants" / name)


def _role_keys(cfg: RunConfig, v: V.Variant) -> dict:
    """What of the model roles a variant needs goes into its cache key."""
    roles = {"slm": {"model": cfg.model, "dtype": cfg.dtype},
             "oracle": {k: x for k, x in asdict(cfg.oracle).items() if k not in VOLATILE}}
    return {r: roles[r] for r in v.needs}


def _context(cfg: RunConfig, sample: SampleConfig, out: str) -> V.BuildContext:
    @functools.lru_cache(maxsize=1)
    def tokenizer():
        from .models import load_tokenizer
        return load_tokenizer(cfg.model)

    def tokenize(text: str) -> list[int]:
        return tokenizer()(text, add_special_tokens=False)["input_ids"]
    roles = {"slm": sample.generator}
    if cfg.oracle.enabled:
        roles["oracle"] = cfg.oracle.generator
    return V.BuildContext(roles=roles, workdir=Path(out), tokenize=tokenize)


def _build_variant(v: V.Variant, parent_dir: str, options, ctx: V.BuildContext, out: str) -> dict:
    ds = v.build(load(parent_dir), options, ctx)
    save(ds, out)
    return {**_data_stats(ds), "counts": dict(ctx.counts)}


def _data_stats(ds) -> dict:
    s = trace_stats(ds)
    d = s["diagnostics"]
    return {"rows": s["rows"], "problems": s["problems"] or 0, "correct_rate": s["correct_rate"] or 0.0,
            "mean_completion_tokens": s["mean_completion_tokens"] or 0.0,
            "mean_edit_distance": d.get("edit_distance"), "oracle_token_share": d.get("oracle_token_share")}


def _stamp_dataset(adapter_dir: str, repo: str, config: str, revision: str) -> None:
    """Name the exact dataset repo, config and revision in the adapter's ``qup_train.json``
    (provenance only: it does not change what was trained, so it is not part of the cache key)."""
    path = Path(adapter_dir) / RUN_FILE
    info = json.loads(path.read_text())
    info.update(dataset_repo=repo, dataset_config=config, dataset_revision=revision)
    path.write_text(json.dumps(info, indent=2) + "\n")


def run_recipe(recipe: str, overrides: dict | None = None, run_dir: str | None = None) -> dict:
    """Run a recipe end to end; return the run summary (also written to ``run_dir/run.json``)."""
    cfg = load_recipe(recipe, overrides)
    run = Path(run_dir or Path("runs") / cfg.name)
    stages = stage_configs(cfg, run)
    publishing.check_hub(cfg.hub)
    for v in V.lineage(*cfg.variants):
        if "oracle" in v.needs and not cfg.oracle.enabled:
            raise ConfigError(f"variant {v.name!r} needs an Oracle: set `oracle: {{model: ...}}` in "
                              "the recipe (a preset, dir, Hub id or `reference`)")
    for s in (cfg.train_problems, cfg.eval_problems):  # fail fast on bad sources, before any model
        load_problems(s)
    run.mkdir(parents=True, exist_ok=True)

    keys: dict[str, str] = {}
    sample = stages["sample"]
    run_step(Step("sample", Path(sample.out), sample, [], lambda: sample_command(sample),
                  volatile=("batch_size", "concurrency", "cache_dir", "endpoints", "retries")), keys)
    built, data = {}, {}
    for v in V.lineage(*cfg.variants):
        parent = sample.out if v.parent == V.SAMPLES else built[v.parent]
        out, opts = variant_dir(run, v.name), cfg.variant_options[v.name]
        data[v.name] = run_step(Step(
            f"variant:{v.name}", Path(out), {"options": opts, "roles": _role_keys(cfg, v)},
            ["sample" if v.parent == V.SAMPLES else f"variant:{v.parent}"],
            lambda v=v, parent=parent, opts=opts, out=out: _build_variant(
                v, parent, opts, _context(cfg, sample, out), out)), keys)
        built[v.name] = out
    base = stages["evaluate:base"]
    evaluations = {"base": run_step(Step("evaluate:base", Path(base.out), base, [],
                                         lambda: evaluate_command(base), volatile=("batch_size",)), keys)}
    with publishing.hub_session(cfg.hub, run) as hub:
        published = []
        nonempty = {v: d for v, d in built.items() if data[v]["rows"]}
        if hub and nonempty:
            published.append(publishing.publish_variants(hub, cfg, sample, nonempty, cfg.variant_options))
        for v in cfg.variants:
            if data[v]["rows"] == 0:  # reported (report, run.json), not a crash of the other variants
                log.warning("variant %s has no rows (%s): not trained; sample more problems or traces "
                            "(sample.k), or check its counts in run.json", v, data[v].get("counts", {}))
                continue
            tc, ec = stages[f"train:{v}"], stages[f"evaluate:{v}"]
            run_step(Step(f"train:{v}", Path(tc.out), tc, [f"variant:{v}"], lambda tc=tc: train_command(tc),
                          volatile=("logging_steps", "save_steps")), keys)
            if hub and published:  # the adapter's card names the exact dataset repo, config and revision
                _stamp_dataset(tc.out, published[0]["repo"], v, published[0]["revision"])
            evaluations[v] = run_step(Step(f"evaluate:{v}", Path(ec.out), ec, [f"train:{v}"],
                                           lambda ec=ec: evaluate_command(ec), volatile=("batch_size",)), keys)
            if hub:
                published.append(publishing.publish_trained(hub, cfg, v, tc.out, evaluations[v]))
    summary = {"name": cfg.name, "model": cfg.model, "run_dir": str(run),
               "eval_source": f"{cfg.eval_problems.source}/{cfg.eval_problems.split}",
               "data": data, "evaluations": evaluations, "published": published, "keys": keys}
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
