"""The paper's data variants as data: one module per variant, one :class:`Variant` entry each.

A variant is built from its ``parent`` (``samples``: the raw SLM traces, or another variant) by
a function ``build(parent_rows, config, ctx) -> rows`` over TRACE datasets; ``config`` is an
instance of the variant's options dataclass (its recipe section, e.g. ``rft: {max_per_problem: 2}``)
and ``ctx`` a :class:`BuildContext`: the model roles it ``needs`` (``oracle``, ``slm``) as
Generators, made on first use, and a work dir for resumable shards. ``qup run``, the
published dataset configs, the cards, the report and the ``qup <variant>`` commands all iterate
:func:`registry`, so a new variant is one module plus one :func:`register` call. A caller with
variants of its own (``qup study``'s ``selected_lam<λ>``) puts them in a registry it owns, in
force for a ``with using(...)`` block, and never changes :data:`REGISTRY`.

Example:
    >>> [v.name for v in lineage("rft")]
    ['self', 'rft']
    >>> get("rft").parent
    'self'
"""
from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import ConfigError

SAMPLES = "samples"   # the root every lineage starts from: the SLM's raw, unverified traces


@dataclass(frozen=True)
class Variant:
    name: str
    parent: str                     # SAMPLES or another variant's name
    doc: str                        # one line, shown in cards and --help
    build: Callable[..., Any]       # (parent: Dataset, config, ctx: BuildContext) -> Dataset
    config: type | None = None      # options dataclass (recipe section named after the variant)
    needs: tuple[str, ...] = ()     # model roles besides the SLM, e.g. ("oracle",)
    scored: bool = False            # built after `score` from the scored variants of its `pool` option
    version: int = 1                # bump when `build` changes what rows it keeps: cached builds are redone

    def options(self, data: dict | None = None, where: str = "") -> Any:
        """The variant's options from a mapping (validated), or None when it takes none."""
        from ..config import from_dict
        if self.config is None:
            if data:
                raise ConfigError(f"{where or self.name}: variant {self.name!r} takes no options")
            return None
        return from_dict(self.config, dict(data or {}), where or self.name)


@dataclass
class BuildContext:
    """What a variant's build may use besides its parent rows."""
    roles: dict[str, Callable[[], Any]] = field(default_factory=dict)  # role -> factory of a Generator
    workdir: Path | None = None        # where resumable shards go (None: keep nothing)
    tokenize: Callable[[str], list] | None = None   # the learner's tokenizer (token counts, edits)
    counts: Counter = field(default_factory=Counter)  # what a build skipped or rejected, and why
    _made: dict = field(default_factory=dict, repr=False)

    def role(self, name: str):
        """The Generator (or the ``reference`` Oracle) playing ``name``, made once on first use."""
        if name not in self._made:
            if name not in self.roles:
                raise ConfigError(f"this variant needs the model role {name!r}; configure it "
                                  f"(e.g. `{name}: {{model: ...}}` in the recipe)")
            self._made[name] = self.roles[name]()
        return self._made[name]


REGISTRY: dict[str, Variant] = {}     # the built-in variants (and a plug-in's)
_ACTIVE: ContextVar[dict | None] = ContextVar("qup_variants", default=None)


def registry() -> dict[str, Variant]:
    """The variants in force: :data:`REGISTRY`, or the registry of the enclosing :func:`using`."""
    return _ACTIVE.get() or REGISTRY


@contextmanager
def using(variants: dict[str, Variant]):
    """Put ``variants`` (e.g. ``{**REGISTRY, ...}`` plus one's own) in force in this block.

    >>> own = dict(REGISTRY)
    >>> _ = register(Variant("rft_copy", "self", "a copy", get("rft").build), into=own)
    >>> with using(own):
    ...     get("rft_copy").parent
    'self'
    >>> "rft_copy" in registry()
    False
    """
    token = _ACTIVE.set(variants)
    try:
        yield variants
    finally:
        _ACTIVE.reset(token)


def register(variant: Variant, into: dict[str, Variant] | None = None) -> Variant:
    """Add ``variant`` to ``into`` (default :data:`REGISTRY`); its parent must be there first."""
    reg = REGISTRY if into is None else into
    if variant.parent != SAMPLES and variant.parent not in reg:
        raise ConfigError(f"variant {variant.name!r}: parent {variant.parent!r} is not registered")
    if variant.name in (SAMPLES, "default") or not variant.name.isidentifier():
        raise ConfigError(f"invalid variant name {variant.name!r}")
    reg[variant.name] = variant
    return variant


def get(name: str) -> Variant:
    reg = registry()
    if name not in reg:
        raise ConfigError(f"unknown variant {name!r}; registered: {sorted(reg)}")
    return reg[name]


def lineage(*names: str, options: dict | None = None) -> list[Variant]:
    """The variants ``names`` and all their ancestors, parents first (registry order); a scored
    variant also brings its ``pool`` (from ``options[name].pool``, else its default options)."""
    want: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        while name != SAMPLES and name not in want:
            want.add(name)
            v = get(name)
            if v.scored:
                opts = (options or {}).get(name) or v.options()
                todo.extend(opts.pool)
            name = v.parent
    return [v for n, v in registry().items() if n in want]


def docs() -> dict[str, str]:
    return {n: v.doc for n, v in registry().items()}


# The built-in variants, parents first; each module registers itself.
from . import self as _self  # noqa: E402,F401,I001
from . import rft as _rft  # noqa: E402,F401
from . import oracle_synth as _oracle_synth  # noqa: E402,F401
from . import oracle_refine as _oracle_refine  # noqa: E402,F401
from . import style_aligned as _style_aligned  # noqa: E402,F401
from . import selected as _selected  # noqa: E402,F401
