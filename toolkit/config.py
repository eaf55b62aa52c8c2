"""Config dataclasses: YAML files + CLI overrides, validated.

Every command has a dataclass config (like TRL's ``SFTConfig``). Values come from, in order:
the dataclass defaults, a YAML file (``--config``), then ``--flag value`` overrides. An unknown
or ill-typed key raises :class:`ConfigError` naming the key and where it came from.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class C:
    ...     k: int = 4
    >>> load_config(C, {"k": 8}).k
    8
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import QupError

T = TypeVar("T")


class ConfigError(QupError, ValueError):
    """A recipe or config value is unknown, ill-typed or invalid."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widen to float)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0] if args else Any, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_coerce(k, kt, where): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "1e-2" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(tp, type) and not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, naming any unknown or ill-typed key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    owned = getattr(cls, "__owned__", {})  # keys another layer sets (e.g. a recipe's stage sections)
    for key in sorted(set(data) & set(owned)):
        raise ConfigError(f"{where}.{key} is set by the run ({owned[key]}); remove it from here")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown} for {cls.__name__}; valid keys: {sorted(names)}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except (TypeError, ValueError, QupError) as e:
        raise ConfigError(f"{where}: {e}") from None


def section(cls: type, owned: dict[str, str], name: str | None = None) -> type:
    """A dataclass with the fields of config ``cls`` except ``owned`` ({field: who sets it});
    :func:`from_dict` rejects an owned key with a message saying who sets it.

    >>> @dataclasses.dataclass
    ... class Stage:
    ...     model: str = "m"
    ...     k: int = 4
    >>> S = section(Stage, {"model": "the recipe's top-level `model`"})
    >>> from_dict(S, {"k": 8}).k
    8
    >>> from_dict(S, {"model": "x"}, "recipe.sample")
    Traceback (most recent call last):
    toolkit.config.ConfigError: recipe.sample.model is set by the run (the recipe's top-level `model`); remove it from here
    """
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name in owned:
            continue
        default = ({"default_factory": f.default_factory} if f.default_factory is not dataclasses.MISSING
                   else {"default": f.default})
        specs.append((f.name, hints[f.name], dataclasses.field(metadata=f.metadata, **default)))
    out = dataclasses.make_dataclass(name or f"{cls.__name__}Section", specs)
    out.__owned__ = dict(owned)
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level")
    return data


def merge(base: dict, override: dict) -> dict:
    """Deep-merge ``override`` into a copy of ``base`` (dicts merge, everything else replaces)."""
    out = dict(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(cls: type[T], source: str | Path | dict | None = None,
                overrides: dict | None = None) -> T:
    """Defaults ← YAML file or dict ← overrides; validated into ``cls``."""
    where = str(source) if isinstance(source, (str, Path)) else "config"
    data = read_yaml(source) if isinstance(source, (str, Path)) else dict(source or {})
    data = merge(data, overrides or {})
    return from_dict(cls, data, where)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


# ---------------------------------------------------------------- CLI flags from dataclass fields
def _flags(cls: type, prefix: str = ""):
    """``(dest, field)`` of every init field; a nested dataclass field contributes its own fields
    (``problems: SourceConfig`` gives ``--source``, ``--split``, ...; dest ``problems__source``)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _flags(hints[f.name], f"{prefix}{f.name}__")
        else:
            yield prefix + f.name, f, hints[f.name]


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add ``--field-name VALUE`` for every field of ``cls`` (values parsed as YAML scalars).

    Fields with ``metadata={"hidden": True}`` are accepted but not listed in ``--help``.
    """
    for dest, f, tp in _flags(cls):
        help_ = f.metadata.get("help", "")
        many = typing.get_origin(tp) is list   # repeat the flag: --endpoints URL1 --endpoints URL2
        parser.add_argument(
            "--" + f.name.replace("_", "-"), dest=f"cfg__{dest}", default=argparse.SUPPRESS,
            metavar=f.name.upper(), action="append" if many else "store",
            help=argparse.SUPPRESS if f.metadata.get("hidden") else help_ + (" (repeatable)" if many else ""),
        )


def _scalar(raw):
    if not isinstance(raw, str):
        return raw
    if raw == "":       # `--flag ''`: the empty string (YAML would read null)
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def overrides_from_args(args: argparse.Namespace) -> dict:
    """The ``--field`` values the user typed, parsed as YAML (``8`` → int, ``[a, b]`` → list),
    nested as the config is (``cfg__problems__source`` → ``{"problems": {"source": ...}}``)."""
    out: dict = {}
    for key, raw in vars(args).items():
        if key.startswith("cfg__"):
            value = _scalar(raw)
            if isinstance(raw, list):  # a repeated flag; one "[a, b]" value is a whole list
                value = [_scalar(r) for r in raw]
                value = value[0] if len(value) == 1 and isinstance(value[0], list) else value
            *parents, leaf = key[5:].split("__")
            node = out
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    return out


def parse_sets(items: list[str], expand_env: bool = False) -> dict:
    """``--set`` items (``["sample.k=8", "hub.org=me"]``, YAML values) as a nested mapping;
    with ``expand_env``, ``$VAR`` in a value is replaced by the environment variable.

    >>> parse_sets(["sample.k=8", "hub.org=me"])
    {'sample': {'k': 8}, 'hub': {'org': 'me'}}
    """
    import os
    out: dict = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"--set expects KEY=VALUE (e.g. sample.k=8), got {item!r}")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(os.path.expandvars(value) if expand_env else value)
    return out
