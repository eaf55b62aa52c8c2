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
import re
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from . import variants as V
from .config import ConfigError, from_dict, merge, read_yaml, section
from .generation import engine_id, resolve_backend
from .generation.roles import VOLATILE, RoleConfig, VLLMOptions, check_backend
from .io import load, save
from .publishing import experiment as publishing
from .report import write_report
from .sources import SourceConfig, load_problems
from .stages.evaluate import EvaluateConfig, evaluate_command
from .stages.sample import SampleConfig, sample_command
from .stages.score import ScoreConfig, Scorers, score_command
from .stages.train import RUN_FILE, TrainConfig, train_command
from .stats import trace_stats
from .steps import Step, run_step

log = logging.getLogger(__name__)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")   # a recipe name: one path component

_TOP = "the recipe's top-level `{}`"
SampleSection = section(SampleConfig, {
    "model": _TOP.format("model"), "problems": _TOP.format("train_problems"),
    "prompt": _TOP.format("prompt"), "dtype": _TOP.format("dtype"), "out": "the run dir",
    "vllm": _TOP.format("vllm")})
TrainSection = section(TrainConfig, {
    "model": _TOP.format("model"), "dtype": _TOP.format("dtype"), "data": "the variant's dir",
    "out": "the run dir", "dataset_repo": "publishing", "dataset_revision": "publishing",
    "dataset_config": "publishing"})
ScoreSection = section(ScoreConfig, {
    "data": "the variant's dir", "out": "the run dir", "reference": "the run (its `self` traces)",
    "learner": _TOP.format("model"), "learner_endpoints": "the recipe's `sample` section",
    "judge": "the recipe's top-level `judge` role (default: the Oracle)",
    "judge_endpoints": "the recipe's top-level `judge` role", "dtype": _TOP.format("dtype"),
    "backend": _TOP.format("backend"), "vllm": _TOP.format("vllm")})
EvaluateSection = section(EvaluateConfig, {
    "model": _TOP.format("model"), "adapter": "the trained variant",
    "problems": _TOP.format("eval_problems"), "dtype": _TOP.format("dtype"),
    "backend": _TOP.format("backend"), "vllm": _TOP.format("vllm"),
    "prompt": _TOP.format("prompt") + ": evaluation uses the sampling prompt",
    "out": "the run dir", "cache_dir": "the run dir"})


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
    judge: RoleConfig = field(default_factory=RoleConfig)   # the reward judge ('' = the Oracle)
    prompt: str = "math_cot"
    dtype: str = "auto"
    backend: str = "auto"                           # the SLM's engine: auto | vllm | transformers
    vllm: VLLMOptions = field(default_factory=VLLMOptions)  # the SLM's vLLM engine options
    variants: list[str] = field(default_factory=lambda: ["rft"])  # which data variants to train on
    sample: SampleSection = field(default_factory=SampleSection)
    score: ScoreSection = field(default_factory=ScoreSection)
    train: TrainSection = field(default_factory=TrainSection)
    evaluate: EvaluateSection = field(default_factory=EvaluateSection)
    hub: HubSection = field(default_factory=HubSection)
    variant_options: dict[str, Any] = field(default_factory=dict)  # from top-level <variant>: keys

    def __post_init__(self):
        if not _NAME.fullmatch(self.name) or ".." in self.name:   # the run dir is runs/<name>
            raise ConfigError(f"name: {self.name[:100]!r} must be a plain name (letters, digits, '.', '_', "
                              "'-'; no '/' or '..'; at most 100 characters)")
        self.backend = check_backend(self.backend, self.vllm, f"recipe {self.name}: backend")
        if self.backend == "endpoint":
            raise ConfigError(f"recipe {self.name}: backend is the SLM's in-process engine (auto | "
                              "vllm | transformers); sample from endpoints with sample.backend: endpoint")
        if not self.variants:
            raise ConfigError("variants: list at least one variant to train on")
        for name in self.variants:
            V.get(name)
        unknown = sorted(set(self.variant_options) - set(V.REGISTRY))
        if unknown:
            raise ConfigError(f"unknown variant section(s) {unknown}; registered: {sorted(V.REGISTRY)}")
        given = {n: V.get(n).options(self.variant_options.get(n), n)
                 for n in {*self.variants, *self.variant_options}}
        self.variant_options = {v.name: given[v.name] if v.name in given else v.options(None, v.name)
                                for v in V.lineage(*self.variants, options=given)}

    def lineage(self) -> list[V.Variant]:
        """Every variant the run builds: those it trains, their parents and selection pools."""
        return V.lineage(*self.variants, options=self.variant_options)

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
    opts = {k: cfg.pop(k) for k in list(cfg) if k in V.REGISTRY}
    cfg["variant_options"] = {**cfg.get("variant_options", {}), **opts}
    return from_dict(RunConfig, cfg, f"recipe {path.stem}")


# how an evaluation ran, not what it gives (a cache only reuses identical chunks)
EVAL_VOLATILE = ("batch_size", "cache_dir")


def stage_configs(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """Every stage's typed config, validated up front so a bad value fails before any work."""
    where = f"recipe {cfg.name}"
    engine = {"backend": resolve_backend(cfg.backend), "vllm": cfg.vllm}
    run = {"model": cfg.model, "dtype": cfg.dtype}
    sampling = {**asdict(cfg.sample), **engine}
    if cfg.sample.backend != "auto":   # the SLM's sampling served apart (e.g. endpoints)
        sampling["backend"] = resolve_backend(cfg.sample.backend)
    out = {"sample": from_dict(SampleConfig, {**sampling, **run, "prompt": cfg.prompt,
                                              "problems": cfg.train_problems,
                                              "out": str(run_dir / "samples")}, f"{where}: sample")}
    evaluate = {**asdict(cfg.evaluate), **run, **engine, "prompt": cfg.prompt, "problems": cfg.eval_problems,
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
            "learner": cfg.model, "judge": judge.model if judge else "", "dtype": cfg.dtype, **engine},
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


def _build_variant(v: V.Variant, parent, options, ctx: V.BuildContext, out: str) -> dict:
    ds = v.build(parent, options, ctx)
    save(ds, out)
    return {**_data_stats(ds), "counts": dict(ctx.counts)}


def _data_stats(ds) -> dict:
    s = trace_stats(ds)
    d = s["diagnostics"]
    return {"rows": s["rows"], "problems": s["problems"] or 0, "correct_rate": s["correct_rate"] or 0.0,
            "mean_completion_tokens": s["mean_completion_tokens"] or 0.0,
            "mean_edit_distance": d.get("edit_distance"), "oracle_token_share": d.get("oracle_token_share")}


def _data_steps(cfg: RunConfig, run: Path, stages: dict, keys: dict) -> tuple[dict, dict]:
    """Build every variant, score it (reward, adaptation cost, drift), then build the variants
    selected from scored pools. Returns ({variant: dir of its scored rows}, {variant: stats})."""
    sample = stages["sample"]
    built, scored, data = {}, {}, {}
    memo: dict = {}
    scorers = functools.lru_cache(maxsize=1)(lambda: _scorers(cfg, sample, stages, memo))
    for v in cfg.lineage():
        out, opts = variant_dir(run, v.name), cfg.variant_options[v.name]
        if v.scored:
            inputs = [f"score:{p}" for p in opts.pool]
            make = lambda v=v, opts=opts, out=out: _build_variant(  # noqa: E731
                v, {p: load(scored[p]) for p in opts.pool}, opts, _context(cfg, sample, out), out)
        else:
            parent = sample.out if v.parent == V.SAMPLES else built[v.parent]
            inputs = ["sample" if v.parent == V.SAMPLES else f"variant:{v.parent}"]
            make = lambda v=v, parent=parent, opts=opts, out=out: _build_variant(  # noqa: E731
                v, load(parent), opts, _context(cfg, sample, out), out)
        data[v.name] = run_step(Step(f"variant:{v.name}", Path(out), {"options": opts, "roles": _role_keys(cfg, v)},
                                     inputs, make, engine=_engines(cfg, sample, v.needs)), keys)
        built[v.name] = scored[v.name] = out
        if v.scored:    # its rows carry the scores of the pool they came from
            continue
        sc = stages[f"score:{v.name}"]
        data[v.name]["scores"] = run_step(Step(
            f"score:{v.name}", Path(sc.out), {"score": sc, "roles": _score_roles(cfg), "columns": _columns()},
            [f"variant:{v.name}", "variant:self"], lambda sc=sc: score_command(sc, scorers()),
            volatile=("batch_size", "shard_size"), engine=_engines(cfg, sample, ("slm", "judge"))), keys)
        scored[v.name] = sc.out
        _remember(memo, sc.out)
    return scored, data


def _engines(cfg: RunConfig, sample: SampleConfig, roles) -> str:
    """The engines (with versions) of the model roles a step runs: part of its cache key."""
    judge = cfg.judge_role
    served = {"slm": sample.backend, "oracle": cfg.oracle.backend if cfg.oracle.enabled and
              cfg.oracle.model != "reference" else None, "judge": judge.backend if judge else None}
    return ", ".join(f"{r}: {engine_id(served[r])}" for r in roles if served.get(r))


def _columns() -> list[str]:
    """The registered diagnostic columns: a newly registered one re-scores (part of score's key)."""
    from .diagnostics.columns import names
    return names()


def _score_roles(cfg: RunConfig) -> dict:
    judge = cfg.judge_role
    return {"slm": {"model": cfg.model, "dtype": cfg.dtype},
            "judge": {k: x for k, x in asdict(judge).items() if k not in VOLATILE} if judge else None}


def _scorers(cfg: RunConfig, sample: SampleConfig, stages: dict, memo: dict) -> Scorers:
    """The run's scoring models, made once: the judge role (or reward model), the SLM as
    learner, the embedder; ``memo`` shares scores of identical rows across variants."""
    from .diagnostics.drift import Embedder
    from .diagnostics.reward import Judge, RewardModel
    sc = stages["score:self"]
    reward = None
    if sc.reward == "judge":
        reward = Judge(cfg.judge_role.generator(), sc.judge_template)
    elif sc.reward == "classifier":
        reward = RewardModel(sc.reward_model, sc.batch_size, cfg.dtype)
    return Scorers(reward, sample.generator(), Embedder(sc.embedder) if sc.embedder else None,
                   sc.min_verdict_mass, sc.shard_size, memo)


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


def prepare(recipe: str, overrides: dict | None = None, run_dir: str | None = None) -> Prepared:
    """Validate the recipe, then sample, build and score every variant and evaluate the base
    model (each a cached step): what ``qup run`` and ``qup study`` share."""
    cfg = load_recipe(recipe, overrides)
    run = Path(run_dir or Path("runs") / cfg.name)
    stages = stage_configs(cfg, run)
    publishing.check_hub(cfg.hub)
    for v in cfg.lineage():
        if "oracle" in v.needs and not cfg.oracle.enabled:
            raise ConfigError(f"variant {v.name!r} needs an Oracle: set `oracle: {{model: ...}}` in "
                              "the recipe (a preset, dir, Hub id or `reference`)")
    for s in (cfg.train_problems, cfg.eval_problems):  # fail fast on bad sources, before any model
        load_problems(s)
    run.mkdir(parents=True, exist_ok=True)

    keys: dict[str, str] = {}
    sample = stages["sample"]
    run_step(Step("sample", Path(sample.out), sample, [], lambda: sample_command(sample),
                  volatile=("batch_size", "concurrency", "cache_dir", "endpoints", "retries"),
                  engine=engine_id(sample.backend)), keys)
    built, data = _data_steps(cfg, run, stages, keys)
    base = stages["evaluate:base"]
    metrics = run_step(Step("evaluate:base", Path(base.out), base, [], lambda: evaluate_command(base),
                            volatile=EVAL_VOLATILE, engine=engine_id(base.backend)), keys)
    return Prepared(cfg, run, stages, keys, built, data, metrics)


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
                                           lambda ec=ec: evaluate_command(ec), volatile=EVAL_VOLATILE,
                                           engine=engine_id(ec.backend)), keys)
            if hub:
                published.append(publishing.publish_trained(hub, cfg, v, tc.out, evaluations[v]))
    from .diagnostics.tables import plot, variant_table
    scored = {v: load(d) for v, d in built.items()}
    table = variant_table(scored)
    plot(scored, table, run / "diagnostics.png")
    summary = {"name": cfg.name, "model": cfg.model, "run_dir": str(run),
               "engine": engine_id(sample.backend),
               "eval_source": f"{cfg.eval_problems.source}/{cfg.eval_problems.split}",
               "data": data, "diagnostics": table, "evaluations": evaluations,
               "published": published, "keys": keys}
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
