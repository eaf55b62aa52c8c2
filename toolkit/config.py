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
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import QupError

T = TypeVar("T")
MAX_DEPTH = 64   # nesting of a config's lists/mappings (deeper input is refused, not recursed into)


class ConfigError(QupError, ValueError):
    """A recipe or config value is unknown, ill-typed or invalid."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def check_finite(value: Any, where: str) -> None:
    """Refuse NaN/inf anywhere in ``value`` (they make invalid JSON and meaningless settings)."""
    stack = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ConfigError(f"{at}: expected a finite number, got {item!r}")
        if isinstance(item, dict):
            stack.extend((v, f"{at}.{k}") for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, f"{at}[{i}]") for i, v in enumerate(item))


def check_depth(value: Any, where: str, limit: int = MAX_DEPTH) -> None:
    """Refuse lists/mappings nested deeper than ``limit`` (checked without recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list, tuple)):
            if depth >= limit:
                raise ConfigError(f"{where}: nested more than {limit} levels deep")
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))


def safe_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` of ``text``; bad YAML or too deep nesting is a :class:`ConfigError`."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ConfigError(f"{where}: {at}invalid YAML: {what}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested more than {MAX_DEPTH} levels deep") from None
    check_depth(data, where)
    return data


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widen to float)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if tp is Any:
        check_finite(value, where)
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
            number = float(value)
        except ValueError:
            number = None
        if number is not None:
            return _coerce(number, tp, where)
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
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: not valid UTF-8 (byte {raw[e.start]:#04x})") from None
    data = safe_yaml(text, str(path)) or {}
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
        value = yaml.safe_load(raw)
    except (yaml.YAMLError, RecursionError):
        return raw
    try:
        check_depth(value, "")
    except ConfigError:
        return raw
    return value


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
        if not eq or not key or "" in key.split("."):
            raise ConfigError(f"--set expects KEY=VALUE (e.g. sample.k=8), got {item[:200]!r}")
        node = out
        *parents, leaf = key.split(".")
        for i, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {'.'.join(parents[:i + 1])} is already set to "
                                  f"{node!r:.80}, not a mapping")
        node[leaf] = safe_yaml(os.path.expandvars(value) if expand_env else value, f"--set {key}")
    return out
