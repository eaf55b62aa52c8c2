"""The standalone variant commands: ``qup <variant>`` and ``qup select``, one library function each.

``qup <variant>`` builds one variant from its parent's dir with the model roles it needs (each a
:class:`~toolkit.generation.roles.RoleConfig`: ``--oracle-model``, ``--oracle-backend``,
``--oracle-endpoint-urls``, ...) and counts tokens with the learner's tokenizer, as ``qup run``
does (``--learner``, default: the SLM that wrote the parent traces, their ``model_id``).

Example:
    >>> args = variant_args(get("oracle_refine"))(traces="runs/x/variants/self",
    ...     out="runs/x/variants/oracle_refine", oracle=RoleConfig("qwen2.5-coder-0.5b-instruct"))
    >>> variant_command("oracle_refine", args, None)                        # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError, keyed, volatile
from ..generation.roles import RoleConfig
from . import BuildContext, Variant, get


@functools.lru_cache(maxsize=None)
def variant_args(v: Variant) -> type:
    """The arguments of ``qup <v.name>`` besides the variant's options: parent dir, output dir,
    shard, learner and one role per model the variant ``needs``."""
    roles = [(r, RoleConfig, field(default_factory=RoleConfig, metadata={
        "help": f"the {r} role" + (" (`reference`: the dataset's own solutions)" if r == "oracle" else ""),
        "prefix": True})) for r in v.needs]
    return dataclasses.make_dataclass(f"{v.name.title().replace('_', '')}Args", [
        ("traces", str, field(default="", metadata={"help": f"the `{v.parent}` variant dir"})),
        ("out", str, volatile("", "output dataset dir")),
        ("learner", str, field(default="", metadata={"help": "the SLM whose tokenizer counts tokens and "
                                                             "edits (default: the traces' model_id)"})),
        *roles, ("shard", str, volatile("", "I/N: build only shard I of N (see `qup merge`)"))])


def _tokenize(model: str, missing: str):
    """The learner's tokenizer (loaded on first use) as ``text -> token ids``; without a model,
    the first use is the error ``missing`` (a variant that counts no tokens needs none)."""
    from ..models import load_tokenizer, local_spec

    @functools.lru_cache(maxsize=1)
    def tok():
        if not model:
            raise ConfigError(missing)
        return load_tokenizer(local_spec(model))
    return lambda text: tok()(text, add_special_tokens=False)["input_ids"]


def variant_command(name: str, args, options) -> dict:
    """Build variant ``name`` from ``args.traces`` into ``args.out`` (``options``: its config)."""
    from ..io import load, save
    from ..sharding import Shard, check_out, take
    from ..stages.verify import summary
    v = get(name)
    if not args.traces or not args.out:
        raise ConfigError(f"{v.name}: --traces (the {v.parent} dir) and --out are required")
    shard = Shard.parse(args.shard or None)
    check_out(args.out, shard, v.name)
    parent, cut = take(load(args.traces), shard)
    learner = args.learner or (parent[0]["model_id"] if len(parent) and "model_id" in parent.column_names else "")
    roles = {r: getattr(args, r) for r in v.needs if getattr(args, r).enabled}
    ctx = BuildContext(roles={r: role.generator for r, role in roles.items()}, workdir=Path(args.out),
                       tokenize=_tokenize(learner, f"{v.name}: --learner is required ({args.traces} names "
                                                   "no model_id)"))
    ds = v.build(parent, options, ctx)
    save(ds, args.out)
    if cut:   # what every shard of this build must share (the models, not where they ran)
        cut.record(args.out, v.name, {"options": keyed(options), "roles": keyed(roles),
                                      "learner": learner}, len(ds))
    return {"out": args.out, "variant": v.name, "parent": summary(parent), **summary(ds),
            "counts": dict(ctx.counts)}


@dataclass
class SelectArgs:
    data: list[str] = field(default_factory=list, metadata={
        "help": "a scored variant as NAME=DIR (a plain DIR names itself by its `variant` column)"})
    out: str = volatile("", "output dataset dir")


def select_command(cfg, args: SelectArgs) -> dict:
    """``qup select``: the pool is the ``--data NAME=DIR`` list; keep what ``cfg`` selects."""
    from ..io import load, save
    from ..stages.verify import summary
    from .selected import select
    pool = {}
    for item in args.data:
        name, _, path = item.rpartition("=")
        ds = load(path)
        if not name and "variant" in ds.column_names and len(set(ds["variant"])) == 1:
            name = ds["variant"][0]    # a plain DIR names itself by its variant column
        if not name or name in pool:
            raise ConfigError(f"--data {item!r}: give each pool member as NAME=DIR with a distinct NAME")
        pool[name] = ds
    if not pool or not args.out:
        raise ConfigError("select: --data NAME=DIR (repeatable, scored variant dirs) and --out are required")
    if cfg.pool != type(cfg)().pool and cfg.pool != list(pool):
        raise ConfigError("select: the pool is the --data NAME=DIR list; do not pass --pool")
    cfg = dataclasses.replace(cfg, pool=list(pool))
    counts: Counter = Counter()
    ds = select(pool, cfg, counts)
    save(ds, args.out)
    return {"out": args.out, "variant": "selected", "lam": cfg.lam, "pool": list(pool), **summary(ds),
            "counts": dict(counts)}
