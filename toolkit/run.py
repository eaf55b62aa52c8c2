"""``qup run``: string the stages together from a YAML recipe. Nothing else lives here.

sample → each variant in the recipe's lineage (``self`` = verified samples, ``rft``, ... from
:mod:`toolkit.variants`) → publish them as one Hub dataset → per trained variant: train, evaluate,
publish the adapter → report. Every step is cached by a key that chains through its inputs
(:mod:`toolkit.steps`): a change anywhere re-runs that step and everything downstream of it, a
killed run resumes, and nothing stale is reported as done.

A recipe names the model roles (:class:`~toolkit.generation.roles.RoleConfig`: ``slm``, the learner,
which samples, is scored and trained and evaluated; ``sampler``, the SLM served apart for sampling
only; ``oracle`` for the Oracle variants; ``judge``, default the Oracle), the ``prompt`` template, the training and
held-out problem slices (``train_problems``/``eval_problems``, source configs), the ``variants`` to
train, one section per stage (``sample``, ``train``, ``evaluate``: the stage configs minus what
the run sets), one section per variant with options (e.g. ``rft: {max_per_problem: 2}``) and
``hub``. Run dir: ``samples/``, ``variants/<name>/``, ``adapters/<name>/``, ``eval/<name>/``,
``report.md``, ``report.png``, ``run.json``.

Example:
    >>> run_recipe("smoke", {"sample": {"k": 2}}, run_dir="runs/smoke")        # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import random
import re
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from . import variants as V
from .config import ConfigError, from_dict, merge, read_yaml, section
from .generation.roles import RoleConfig
from .io import load, save
from .publishing import experiment as publishing
from .report import write_report
from .sources import SourceConfig, load_problems
from .stages.evaluate import EvaluateConfig, evaluate_command
from .stages.sample import SampleConfig, sample_command
from .stages.score import ScoreConfig, Scorers, roles_engine, score_command
from .stages.train import RUN_FILE, TrainConfig, train_command
from .stats import trace_stats
from .steps import Step, run_step

log = logging.getLogger(__name__)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")   # a recipe name: one path component

_TOP = "the recipe's top-level `{}`"
SampleSection = section(SampleConfig, {
    "slm": _TOP.format("slm") + " role (sampling served apart: `sampler`)",
    "problems": _TOP.format("train_problems"), "prompt": _TOP.format("prompt"), "out": "the run dir"})
TrainSection = section(TrainConfig, {
    "model": _TOP.format("slm.model"), "dtype": _TOP.format("slm.dtype"), "data": "the variant's dir",
    "out": "the run dir", "dataset_repo": "publishing", "dataset_revision": "publishing",
    "dataset_config": "publishing"})
ScoreSection = section(ScoreConfig, {
    "data": "the variant's dir", "out": "the run dir", "reference": "the run (its `self` traces)",
    "learner": _TOP.format("slm") + " role", "judge": _TOP.format("judge") + " role (default: the Oracle)",
    "dtype": _TOP.format("slm.dtype")})
EvaluateSection = section(EvaluateConfig, {
    "model": _TOP.format("slm") + " role", "adapter": "the trained variant",
    "problems": _TOP.format("eval_problems"),
    "prompt": _TOP.format("prompt") + ": evaluation uses the sampling prompt",
    "out": "the run dir", "cache_dir": "the run dir"})
EvaluateSection.__moved__ = {k: "slm." + k for k in EvaluateConfig.__moved__}


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
    slm: RoleConfig = field(default_factory=lambda: RoleConfig("tiny-random"))  # the SLM (the learner)
    sampler: RoleConfig = field(default_factory=RoleConfig)  # the SLM served for sampling (default: slm)
    oracle: RoleConfig = field(default_factory=RoleConfig)  # the Oracle role ('' = none)
    judge: RoleConfig = field(default_factory=RoleConfig)   # the reward judge ('' = the Oracle)
    prompt: str = "math_cot"
    variants: list[str] = field(default_factory=lambda: ["rft"])  # which data variants to train on
    unscored: list[str] = field(default_factory=list)  # built, not scored (neither trained nor pooled)
    max_rows: int | None = None   # every scored variant keeps a seeded random N of its rows (equal data)
    sample: SampleSection = field(default_factory=SampleSection)
    score: ScoreSection = field(default_factory=ScoreSection)
    train: TrainSection = field(default_factory=TrainSection)
    evaluate: EvaluateSection = field(default_factory=EvaluateSection)
    hub: HubSection = field(default_factory=HubSection)
    variant_options: dict[str, Any] = field(default_factory=dict)  # from top-level <variant>: keys

    # the SLM's flat keys before it was one role
    __moved__ = {"model": "slm.model", "dtype": "slm.dtype", "backend": "slm.backend", "vllm": "slm.vllm"}

    def __post_init__(self):
        if not _NAME.fullmatch(self.name) or ".." in self.name:   # the run dir is runs/<name>
            raise ConfigError(f"name: {self.name[:100]!r} must be a plain name (letters, digits, '.', '_', "
                              "'-'; no '/' or '..'; at most 100 characters)")
        for role in ("slm", "sampler"):
            if getattr(self, role).backend == "reference" or role == "slm" and not self.slm.enabled:
                raise ConfigError(f"recipe {self.name}.{role}.model: the SLM must be a model, got "
                                  f"{getattr(self, role).model!r}")
        if not self.variants:
            raise ConfigError("variants: list at least one variant to train on")
        for name in self.variants:
            V.get(name)
        unknown = sorted(set(self.variant_options) - set(V.registry()))
        if unknown:
            raise ConfigError(f"unknown variant section(s) {unknown}; registered: {sorted(V.registry())}")
        given = {n: V.get(n).options(self.variant_options.get(n), n)
                 for n in {*self.variants, *self.variant_options}}
        self.variant_options = {v.name: given[v.name] if v.name in given else v.options(None, v.name)
                                for v in V.lineage(*self.variants, options=given)}
        if self.max_rows is not None and self.max_rows < 1:
            raise ConfigError(f"max_rows: must be >= 1 or null, got {self.max_rows}")
        for name in self.unscored:
            if name not in self.variant_options or name in self.variants or name in self.pools():
                raise ConfigError(f"unscored: {name!r} must be a built variant that is neither trained "
                                  f"nor a selection pool (built: {sorted(self.variant_options)})")

    def pools(self) -> set[str]:
        """The variants some selection picks from."""
        return {p for o in self.variant_options.values() for p in getattr(o, "pool", None) or ()}

    def lineage(self) -> list[V.Variant]:
        """Every variant the run builds: those it trains, their parents and selection pools."""
        return V.lineage(*self.variants, options=self.variant_options)

    @property
    def model(self) -> str:
        """The SLM's model (what trains and names the published repos)."""
        return self.slm.model

    @property
    def dtype(self) -> str:
        return self.slm.dtype

    @property
    def sample_role(self) -> RoleConfig:
        """The SLM as it samples: the ``sampler`` role (its model defaults to the SLM's), else ``slm``."""
        if self.sampler == RoleConfig():
            return self.slm
        return dataclasses.replace(self.sampler, model=self.sampler.model or self.slm.model)

    @property
    def judge_role(self) -> RoleConfig | None:
        """The judge: the ``judge`` role, else the Oracle when it is a model, else none."""
        if self.judge.enabled:
            return self.judge
        return self.oracle if self.oracle.enabled and self.oracle.model != "reference" else None


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
    cfg.pop("study", None)          # `qup study`'s section (seeds, λs, benchmarks): see toolkit.study
    opts = {k: cfg.pop(k) for k in list(cfg) if k in V.registry()}
    cfg["variant_options"] = {**cfg.get("variant_options", {}), **opts}
    return from_dict(RunConfig, cfg, f"recipe {path.stem}")


def stage_configs(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """Every stage's typed config, validated up front so a bad value fails before any work."""
    where = f"recipe {cfg.name}"
    run = {"model": cfg.slm.model, "dtype": cfg.slm.dtype}
    out = {"sample": from_dict(SampleConfig, {**asdict(cfg.sample), "slm": cfg.sample_role, "prompt": cfg.prompt,
                                              "problems": cfg.train_problems,
                                              "out": str(run_dir / "samples")}, f"{where}: sample")}
    evaluate = {**asdict(cfg.evaluate), "model": cfg.slm, "prompt": cfg.prompt, "problems": cfg.eval_problems,
                "cache_dir": str(run_dir / "cache" / "eval")}
    out["evaluate:base"] = from_dict(EvaluateConfig, {**evaluate, "out": str(run_dir / "eval" / "base")},
                                     f"{where}: evaluate")
    judge = cfg.judge_role
    reward = asdict(cfg.score)["reward"]
    if reward == "judge" and judge is None:
        log.warning("no judge (no `judge` role and no model Oracle): the run measures no reward")
        reward = "none"
    for v in cfg.lineage():
        out[f"score:{v.name}"] = from_dict(ScoreConfig, {
            **asdict(cfg.score), "reward": reward, "data": variant_dir(run_dir, v.name),
            "out": str(run_dir / "scores" / v.name), "reference": variant_dir(run_dir, "self"),
            "learner": cfg.slm, "judge": judge or RoleConfig(), "dtype": cfg.slm.dtype},
            f"{where}: score")
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


def _engines(roles: dict[str, RoleConfig]) -> str:
    """The engines (with versions) serving ``roles``: part of a step's key (asked again after it ran)."""
    return ", ".join(f"{name}: {role.engine()}" for name, role in roles.items() if role.enabled)


def _context(cfg: RunConfig, sample: SampleConfig, out: str) -> V.BuildContext:
    @functools.lru_cache(maxsize=1)
    def tokenizer():
        from .models import load_tokenizer
        return load_tokenizer(cfg.slm.model)

    def tokenize(text: str) -> list[int]:
        return tokenizer()(text, add_special_tokens=False)["input_ids"]
    roles = {"slm": sample.slm.generator}
    if cfg.oracle.enabled:
        roles["oracle"] = cfg.oracle.generator
    return V.BuildContext(roles=roles, workdir=Path(out), tokenize=tokenize)


def _build_variant(v: V.Variant, parent, options, ctx: V.BuildContext, out: str,
                   max_rows: int | None = None) -> dict:
    ds = v.build(parent, options, ctx)
    if max_rows is not None and len(ds) > max_rows:     # equal data per arm: a seeded subset
        ctx.counts["over_max_rows"] += len(ds) - max_rows
        ds = ds.select(sorted(random.Random(0).sample(range(len(ds)), max_rows)))
    save(ds, out)
    return {**_data_stats(ds), "counts": dict(ctx.counts)}


def _data_stats(ds) -> dict:
    s = trace_stats(ds)
    d = s["diagnostics"]
    return {"rows": s["rows"], "problems": s["problems"] or 0, "correct_rate": s["correct_rate"] or 0.0,
            "mean_completion_tokens": s["mean_completion_tokens"] or 0.0,
            "mean_edit_distance": d.get("edit_distance"), "oracle_token_share": d.get("oracle_token_share")}


def _data_steps(cfg: RunConfig, run: Path, stages: dict, keys: dict) -> tuple[dict, dict]:
    """Build every variant, then score them (reward, adaptation cost, drift), then build the
    variants selected from scored pools: one model role after another, so a CPU holds few engines
    (:data:`toolkit.generation.vllm_engine.CPU_ENGINES`). Returns ({variant: dir of its scored
    rows}, {variant: stats})."""
    sample = stages["sample"]
    built, scored, data = {}, {}, {}
    memo: dict = {}
    scorers = functools.lru_cache(maxsize=1)(lambda: Scorers.from_config(stages["score:self"], memo))

    def build(v: V.Variant) -> None:
        roles = {r: {"slm": sample.slm, "oracle": cfg.oracle}[r] for r in v.needs}
        out, opts = variant_dir(run, v.name), cfg.variant_options[v.name]
        cap = cfg.max_rows if v.name in cfg.variants or v.name in cfg.pools() else None
        if v.scored:
            inputs = [f"score:{p}" for p in opts.pool]
            make = lambda: _build_variant(  # noqa: E731
                v, {p: load(scored[p]) for p in opts.pool}, opts, _context(cfg, sample, out), out, cap)
        else:   # a variant's parent is never a selection (selections are built last)
            parent = sample.out if v.parent == V.SAMPLES else built[v.parent]
            inputs = ["sample" if v.parent == V.SAMPLES else f"variant:{v.parent}"]
            make = lambda: _build_variant(v, load(parent), opts, _context(cfg, sample, out), out, cap)  # noqa: E731
        key = {"options": opts, "roles": roles, **({"max_rows": cap} if cap else {}),
               **({"version": v.version} if v.version > 1 else {})}
        data[v.name] = run_step(Step(f"variant:{v.name}", Path(out), key, inputs, make,
                                     engine=lambda: _engines(roles)), keys)
        built[v.name] = scored[v.name] = out

    def score(v: V.Variant) -> None:
        sc = stages[f"score:{v.name}"]
        data[v.name]["scores"] = run_step(Step(
            f"score:{v.name}", Path(sc.out), {"score": sc, "columns": _columns()},
            [f"variant:{v.name}", "variant:self"], lambda: score_command(sc, scorers()),
            engine=lambda: roles_engine(sc)), keys)
        scored[v.name] = sc.out
        _remember(memo, sc.out)

    lineage = cfg.lineage()
    for v in lineage:
        if not v.scored:
            build(v)
    for v in lineage:
        if not v.scored and v.name not in cfg.unscored:    # a selection carries its pool's scores
            score(v)
    for v in lineage:
        if v.scored:
            build(v)
    return scored, data


def _columns() -> list[str]:
    """The registered diagnostic columns: a newly registered one re-scores (part of score's key)."""
    from .diagnostics.columns import names
    return names()


def _remember(memo: dict, scored_dir: str) -> None:
    """Seed ``memo`` with a scored dataset's per-text diagnostics (cached steps included)."""
    from .diagnostics.columns import metrics
    from .stages.score import memo_key
    groups = [[c.name for c in m.columns] for m in metrics() if m.per_text]
    for row in load(scored_dir):
        for names in groups:
            if all(n in row for n in names) and row[names[0]] is not None:
                memo.setdefault(memo_key(row), {}).update({n: row[n] for n in names})


def _stamp_dataset(adapter_dir: str, repo: str, config: str, revision: str) -> None:
    """Name the exact dataset repo, config and revision in the adapter's ``qup_train.json``
    (provenance only: it does not change what was trained, so it is not part of the cache key)."""
    path = Path(adapter_dir) / RUN_FILE
    info = json.loads(path.read_text())
    info.update(dataset_repo=repo, dataset_config=config, dataset_revision=revision)
    path.write_text(json.dumps(info, indent=2) + "\n")


@dataclass
class Prepared:
    """A run's data side, done: the samples, every variant built and scored, the base evaluated."""
    cfg: RunConfig
    run: Path                       # the run dir
    stages: dict[str, Any]          # every stage's typed config (see :func:`stage_configs`)
    keys: dict[str, str]            # cache key of every step run so far
    built: dict[str, str]           # variant -> dir of its scored rows
    data: dict[str, dict]           # variant -> stats (rows, problems, counts, scores)
    base: dict                      # the base SLM's held-out metrics
    decontamination: dict = field(default_factory=dict)   # see toolkit.decontaminate.check


def prepare(recipe: str, overrides: dict | None = None, run_dir: str | None = None,
            benchmarks: tuple[SourceConfig, ...] = ()) -> Prepared:
    """Validate the recipe, then sample, build and score every variant and evaluate the base
    model (each a cached step): what ``qup run`` and ``qup study`` share. Training problems that
    overlap ``eval_problems`` or ``benchmarks`` are left out of sampling (:mod:`toolkit.decontaminate`)."""
    cfg = load_recipe(recipe, overrides)
    run = Path(run_dir or Path("runs") / cfg.name)
    stages = stage_configs(cfg, run)
    publishing.check_hub(cfg.hub)
    for v in cfg.lineage():
        if "oracle" in v.needs and not cfg.oracle.enabled:
            raise ConfigError(f"variant {v.name!r} needs an Oracle: set `oracle: {{model: ...}}` in "
                              "the recipe (a preset, dir, Hub id or `reference`)")
    decon = _decontaminate(cfg, benchmarks)   # loads every source: fails fast, before any model
    run.mkdir(parents=True, exist_ok=True)

    keys: dict[str, str] = {}
    sample = stages["sample"] = dataclasses.replace(stages["sample"], problems=dataclasses.replace(
        stages["sample"].problems, exclude=decon["exclude"]))
    run_step(Step("sample", Path(sample.out), sample, [], lambda: sample_command(sample),
                  engine=sample.slm.engine), keys)
    built, data = _data_steps(cfg, run, stages, keys)
    base = stages["evaluate:base"]
    metrics = run_step(Step("evaluate:base", Path(base.out), base, [], lambda: evaluate_command(base),
                            engine=base.model.engine), keys)
    return Prepared(cfg, run, stages, keys, built, data, metrics, decon)


def _decontaminate(cfg: RunConfig, benchmarks) -> dict:
    """Which training problems overlap the held-out ones (one clear error when all do)."""
    from .decontaminate import check
    evals = {f"{Path(s.source.rstrip('/')).name}/{s.split}": load_problems(s)
             for s in (cfg.eval_problems, *benchmarks)}
    report = check(load_problems(cfg.train_problems), evals, f"recipe {cfg.name}")
    if report["dropped"]:
        log.warning("decontamination: %d of %d training problems overlap held-out problems %s: left out",
                    report["dropped"], report["checked"], report["by_benchmark"])
    return report


def run_recipe(recipe: str, overrides: dict | None = None, run_dir: str | None = None) -> dict:
    """Run a recipe end to end; return the run summary (also written to ``run_dir/run.json``)."""
    p = prepare(recipe, overrides, run_dir)
    cfg, run, stages, keys, built, data = p.cfg, p.run, p.stages, p.keys, p.built, p.data
    sample = stages["sample"]
    evaluations = {"base": p.base}
    with publishing.hub_session(cfg.hub, run) as hub:
        published = []
        nonempty = {v: d for v, d in built.items() if data[v]["rows"]}
        if hub and nonempty:
            published.append(publishing.publish_variants(hub, cfg, sample, nonempty, cfg.variant_options,
                                                         p.decontamination))
        trained = [v for v in cfg.variants if data[v]["rows"]]
        for v in cfg.variants:
            if v not in trained:  # reported (report, run.json), not a crash of the other variants
                log.warning("variant %s has no rows (%s): not trained; sample more problems or traces "
                            "(sample.k), or check its counts in run.json", v, data[v].get("counts", {}))
        for v in trained:       # every training first: evaluation's engine then starts once
            tc = stages[f"train:{v}"]
            run_step(Step(f"train:{v}", Path(tc.out), tc, [f"variant:{v}"], lambda tc=tc: train_command(tc)),
                     keys)
            if hub and published:  # the adapter's card names the exact dataset repo, config and revision
                _stamp_dataset(tc.out, published[0]["repo"], v, published[0]["revision"])
        for v in trained:
            tc, ec = stages[f"train:{v}"], stages[f"evaluate:{v}"]
            evaluations[v] = run_step(Step(f"evaluate:{v}", Path(ec.out), ec, [f"train:{v}"],
                                           lambda ec=ec: evaluate_command(ec), engine=ec.model.engine), keys)
            if hub:
                published.append(publishing.publish_trained(hub, cfg, v, tc.out, evaluations[v]))
    from .diagnostics.tables import plot, variant_table
    scored = {v: load(d) for v, d in built.items()}
    table = variant_table(scored)
    plot(scored, table, run / "diagnostics.png")
    summary = {"name": cfg.name, "model": cfg.model, "run_dir": str(run),
               "engine": sample.slm.engine(),
               "eval_source": f"{cfg.eval_problems.source}/{cfg.eval_problems.split}",
               "data": data, "diagnostics": table, "evaluations": evaluations,
               "published": published, "keys": keys, "decontamination": p.decontamination}
    summary["report"] = str(write_report(run, summary))
    (run / "run.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def print_table(summary: dict) -> None:
    """The run's last words: one row per variant (data, every shown diagnostic, held-out accuracy)."""
    from rich.console import Console
    from rich.table import Table

    from .diagnostics.tables import header, cells
    from .stats import wilson

    def fmt(s):
        return "—" if not s or s.get("mean") is None else f"{s['mean']:.3f}"
    evals, diag = summary["evaluations"], summary.get("diagnostics", {})
    table = Table(title=f"{summary['name']}: training data and held-out pass@1 on {summary['eval_source']}")
    for col in ("variant", "rows", "problems", *header(diag), "accuracy", "95% interval"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for name in ["base", *[n for n in diag if n != "self" or "self" in evals]]:
        d, m = diag.get(name, {}), evals.get(name)
        acc = ("—", "not trained") if m is None else (
            f"{m['correct']}/{m['total']} ({100 * m['accuracy']:.1f}%)",
            "{:.1f}–{:.1f}%".format(*(100 * x for x in wilson(m["correct"], m["total"]))))
        table.add_row(name if name != "base" else "base (no LoRA)", str(d.get("rows", "—")),
                      str(d.get("problems", "—")), *cells(d, fmt), *acc)
    console = Console(stderr=True)
    console.width = max(console.width, 160)   # a pipe or CI log reports 80 columns
    console.print(table)
