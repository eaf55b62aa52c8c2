"""``qup study``: every variant of a recipe, trained with several seeds and evaluated on the same
held-out problems, with paired statistics and a pre-training prediction of utility.

The study is ``qup run`` widened. Its recipe's ``study:`` section (a :class:`StudyConfig`) adds:
``seeds`` (LoRA init, shuffling, dropout), ``lambdas`` (compatibility-aware ``selected`` at each
λ, a variant ``selected_lam<λ>`` over ``pool``), ``criteria`` (``selected_<criterion>``: GRAPE,
RSR, IFD, Mix Distillation; :mod:`toolkit.variants.selected`), extra held-out ``benchmarks`` and the ``baseline``
of the paired comparisons (``rft``). Everything is a cached step of the run dir
(:mod:`toolkit.steps`): the samples, Oracle outputs and scores of a ``qup run`` of the same recipe
are reused, its adapters serve as the recipe's own seed, and a killed study re-runs only what is
missing. Each (variant, seed) cell is trained, then evaluated: a run dir kept without its adapter
weights (``studies/`` in git) retrains only the cells whose evaluations are missing.

Outputs (``<run>/study/``): ``results/`` (the results dataset, :data:`toolkit.schema.RESULTS`),
``report.md`` with the paradox table, the paired comparison against the baseline and the
prediction (Spearman), ``paradox.png`` and ``study.json``. Published: the variants dataset, every
adapter (seed ``s`` other than the recipe's: repo ``…-<variant>-seed<s>-lora``) and the results
dataset ``<dataset repo>-results``.

Example:
    >>> summary = run_study("smoke", {"study": {"seeds": [0, 1]}}, run_dir="runs/smoke")  # doctest: +SKIP
    >>> summary["prediction"]["nll"]["rho"]                                                   # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from .. import variants as V
from ..config import ConfigError, from_dict, merge, read_yaml
from ..sources import SourceConfig, load_problems
from ..models import ADAPTER_WEIGHTS as ADAPTER
from ..steps import MARKER, Step, run_step, skipped, step_key

log = logging.getLogger(__name__)


@dataclass
class StudyConfig:
    """The recipe's ``study:`` section."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2],
                             metadata={"help": "training seeds per variant"})
    lambdas: list[float] = field(default_factory=lambda: [0.0, 1.0],
                                 metadata={"help": "λ of compatibility-aware `selected` ([] = none)"})
    pool: list[str] = field(default_factory=list, metadata={
        "help": "variants `selected` picks from (default: the recipe's trained, unscored variants)"})
    benchmarks: list[SourceConfig] = field(default_factory=list, metadata={
        "help": "held-out sets besides the recipe's eval_problems"})
    criteria: list[str] = field(default_factory=list, metadata={
        "help": "selection criteria besides reward_nll at each λ (grape, rsr, ifd, mix): `selected_<name>`"})
    baseline: str = field(default="rft", metadata={"help": "variant every other is paired against"})
    bootstrap: int = field(default=2000, metadata={"help": "paired bootstrap resamples"})

    def __post_init__(self):
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"study: seeds must be distinct and at least one, got {self.seeds}")
        if any(not (lam >= 0) for lam in self.lambdas):
            raise ConfigError(f"study: lambdas must be >= 0, got {self.lambdas}")
        if self.bootstrap < 100:
            raise ConfigError(f"study: bootstrap must be >= 100, got {self.bootstrap}")
        from ..variants.selected import CRITERIA
        bad = [c for c in self.criteria if c not in CRITERIA or c == "reward_nll"]
        if bad or len(set(self.criteria)) != len(self.criteria):
            raise ConfigError(f"study: criteria {bad or self.criteria} must be distinct registered selection "
                              f"criteria other than reward_nll (set its λ in lambdas): "
                              f"{sorted(set(CRITERIA) - {'reward_nll'})}")


def selected_name(lam: float) -> str:
    """``selected_lam0``, ``selected_lam0p5``: a variant name (an identifier) per λ."""
    return "selected_lam" + f"{lam:g}".replace(".", "p").replace("-", "m")


def criterion_name(criterion: str) -> str:
    """``selected_grape``: the study's variant selecting by a registered criterion."""
    return f"selected_{criterion}"


def variants(lambdas: list[float], criteria: list[str] = ()) -> dict[str, V.Variant]:
    """The study's own registry: the variants in force plus ``selected_lam<λ>`` for each λ and
    ``selected_<criterion>`` for each criterion (the process-wide
    :data:`toolkit.variants.REGISTRY` is never changed)."""
    from ..variants.selected import CRITERIA
    own = dict(V.registry())
    docs = {selected_name(lam): f"compatibility-aware selection at λ = {lam:g}" for lam in lambdas}
    docs.update({criterion_name(c): f"selection by {c}: {CRITERIA[c].doc}" for c in criteria})
    for name, doc in docs.items():
        if name not in own:
            V.register(dataclasses.replace(V.get("selected"), name=name, doc=doc), into=own)
    return own


def load_study(recipe: str, overrides: dict | None = None) -> tuple[StudyConfig, dict]:
    """The study section of ``recipe`` (with ``overrides``) and the run overrides that add its
    ``selected_lam<λ>`` variants to the recipe's."""
    from ..run import load_recipe, recipe_path
    raw = merge(read_yaml(recipe_path(recipe)), overrides or {})
    study = from_dict(StudyConfig, dict(raw.get("study") or {}), f"recipe {Path(recipe).stem}: study")
    cfg = load_recipe(recipe, overrides)
    trained = [v for v in cfg.variants if not V.get(v).scored]
    pool = study.pool or trained
    bad = [p for p in pool if p not in V.registry() or V.get(p).scored]
    if (study.lambdas or study.criteria) and (bad or not pool):
        raise ConfigError(f"study: pool {pool} must name built, unscored variants (bad: {bad})")
    extra = {selected_name(lam): {"pool": list(pool), "lam": lam, "max_per_problem": 1}
             for lam in study.lambdas}
    extra.update({criterion_name(c): {"pool": list(pool), "criterion": c, "max_per_problem": 1}
                  for c in study.criteria})
    run_over = merge(overrides or {}, {"variants": [*cfg.variants, *[n for n in extra if n not in cfg.variants]],
                                       **extra})
    if study.baseline not in run_over["variants"]:
        raise ConfigError(f"study: baseline {study.baseline!r} is not a trained variant "
                          f"({run_over['variants']}); set study.baseline")
    return study, run_over


def _bench_name(src: SourceConfig) -> str:
    return Path(src.source.rstrip("/")).name


def _cells(p, study: StudyConfig) -> list[dict]:
    """Every (variant, seed) adapter and its evaluations as steps' configs (names, dirs)."""
    benches = [p.cfg.eval_problems, *study.benchmarks]
    cells = []
    for v in ["base", *p.cfg.variants]:
        if v != "base" and p.data[v]["rows"] == 0:
            log.warning("study: variant %s has no rows: not trained", v)
            continue
        for seed in ([None] if v == "base" else study.seeds):
            own = seed in (None, p.cfg.train.seed)
            tag = "" if own else f"@seed{seed}"
            train = None
            if v != "base":
                tc = p.stages[f"train:{v}"]
                train = tc if own else dataclasses.replace(tc, seed=seed, out=f"{tc.out}-seed{seed}")
            evals = []
            for i, src in enumerate(benches):
                ec = p.stages[f"evaluate:{v}"]
                name = f"evaluate:{v}{tag}" + ("" if i == 0 else f"@{_bench_name(src)}")
                out = ec.out if i == 0 and own else f"{ec.out}{tag.replace('@', '-')}" + (
                    "" if i == 0 else f"-{_bench_name(src)}")
                evals.append((name, dataclasses.replace(
                    ec, problems=src, out=out, adapter=train.out if train else "")))
            cells.append({"variant": v, "seed": -1 if seed is None else seed, "tag": tag,
                          "train": train, "evals": evals})
    return cells


def run_study(recipe: str, overrides: dict | None = None, run_dir: str | None = None) -> dict:
    """Run (or resume) the study of ``recipe``; return its summary (also ``<run>/study/study.json``)."""
    study, run_over = load_study(recipe, overrides)
    for src in study.benchmarks:
        load_problems(src)         # fail fast on a bad benchmark source
    with V.using(variants(study.lambdas, study.criteria)):
        return _run(recipe, study, run_over, run_dir)


def _run(recipe: str, study: StudyConfig, run_over: dict, run_dir: str | None) -> dict:
    from ..io import load
    from ..publishing import experiment as publishing
    from ..run import _stamp_dataset, prepare
    from ..stages.evaluate import evaluate_command
    from ..stages.train import train_command
    from . import report, results

    p = prepare(recipe, run_over, run_dir, benchmarks=tuple(study.benchmarks))
    cells = _cells(p, study)
    with publishing.hub_session(p.cfg.hub, p.run) as hub:
        data_pub = None
        nonempty = {v: d for v, d in p.built.items() if p.data[v]["rows"]}
        if hub and nonempty:
            data_pub = publishing.publish_variants(hub, p.cfg, p.stages["sample"], nonempty,
                                                   p.cfg.variant_options, p.decontamination)
        for cell in cells:      # a cell is trained, then evaluated: its adapter is needed only in between
            v, tc = cell["variant"], cell["train"]
            steps = [Step(name, Path(ec.out), ec, [f"train:{v}{cell['tag']}"] if tc else [],
                          lambda ec=ec: evaluate_command(ec), engine=ec.model.engine)
                     for name, ec in cell["evals"]]
            if tc is not None:
                train = Step(f"train:{v}{cell['tag']}", Path(tc.out), tc, [f"variant:{v}"],
                             lambda tc=tc: train_command(tc))
                _forget_lost_adapter(train, steps, p.keys)
                cell["train_result"] = run_step(train, p.keys)
                if data_pub:
                    _stamp_dataset(tc.out, data_pub["repo"], v, data_pub["revision"])
            cell["metrics"] = [run_step(step, p.keys) for step in steps]
            cell["outcomes"] = [_outcomes(load(ec.out)) for _, ec in cell["evals"]]
            if hub and tc is not None and (Path(tc.out) / ADAPTER).exists():
                label = v + cell["tag"].replace("@", "-")
                cell["adapter_pub"] = publishing.publish_trained(hub, p.cfg, label, tc.out, cell["metrics"])
        rows = results.rows(p, cells, data_pub)
        out = p.run / "study"
        results.save_rows(rows, out / "results")
        summary = report.write(p, study, cells, rows, out)
        if hub:
            summary["results_published"] = results.publish(hub, p, rows, summary, data_pub,
                                                             results.details(cells, p.cfg.name))
    (out / "study.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _forget_lost_adapter(train: Step, evals: list[Step], keys: dict[str, str]) -> None:
    """A finished training whose adapter weights are gone (a run dir kept without its weights, as
    ``studies/`` keeps it in git) is redone only while one of its evaluations is still missing."""
    marker = Path(train.out) / MARKER
    if (Path(train.out) / ADAPTER).exists() or not marker.exists():
        return
    after = {**keys, train.name: step_key(train, keys)}
    if not all(skipped(e.out, step_key(e, after)) for e in evals):
        log.info("%s: its adapter weights are gone and an evaluation is missing: training again", train.name)
        marker.unlink()


def _outcomes(ds) -> dict[str, bool]:
    return dict(zip(ds["problem_id"], ds["correct"]))
