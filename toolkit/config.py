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
import functools
import logging
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
        if isinstance(value, str) and hasattr(tp, "from_str"):   # `judge: qwen` = `judge: {model: qwen}`
            return tp.from_str(value)
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


def _moved(cls: type, data: dict, names: set[str], where: str) -> dict:
    """``data`` with the keys that moved (``cls.__moved__``: {old key: new dotted place}, e.g. a
    role's flat keys) put in their new place (the old key wins), said once; a key whose new place
    is outside ``cls`` (or is two places) is an error naming the new place."""
    moved = getattr(cls, "__moved__", {})
    for key in sorted(k for k in set(data) - names if k in moved):
        new = moved[key]
        if " " in new or new.split(".")[0] not in names:
            raise ConfigError(f"{where}.{key} is now `{new}`")
        _say_moved(f"{where}.{key} is now {where}.{new}")
        data = _put({k: v for k, v in data.items() if k != key}, new.split("."), data[key], where)
    return data


def _put(data: dict, path: list[str], value: Any, where: str) -> dict:
    if len(path) == 1:
        return {**data, path[0]: value}
    inner = data.get(path[0], {})
    if not isinstance(inner, dict):
        raise ConfigError(f"{where}.{path[0]}: expected a mapping, got {inner!r:.80}")
    return {**data, path[0]: _put(inner, path[1:], value, where)}


@functools.lru_cache(maxsize=None)
def _say_moved(line: str) -> None:
    logging.getLogger(__name__).warning("%s (the old key still works)", line)


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, naming any unknown or ill-typed key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    owned = getattr(cls, "__owned__", {})  # keys another layer sets (e.g. a recipe's stage sections)
    for key in sorted(set(data) & set(owned)):
        raise ConfigError(f"{where}.{key} is set by the run ({owned[key]}); remove it from here")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    data = _moved(cls, data, names, where)
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown} for {cls.__name__}; valid keys: {sorted(names)}"
        )
    for f in dataclasses.fields(cls):     # a nested config given in part keeps its other defaults
        if isinstance(data.get(f.name), dict) and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
            if dataclasses.is_dataclass(default):
                data = {**data, f.name: merge(dataclasses.asdict(default), data[f.name])}
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
    out.__moved__ = getattr(cls, "__moved__", {})
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
                overrides: dict | None = None, where: str = "") -> T:
    """Defaults ← YAML file or dict ← overrides; validated into ``cls`` (errors name ``where``,
    default: the file)."""
    where = where or (str(source) if isinstance(source, (str, Path)) else "config")
    data = read_yaml(source) if isinstance(source, (str, Path)) else dict(source or {})
    data = merge(data, overrides or {})
    return from_dict(cls, data, where)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


# ---------------------------------------------------------------- what changes a result
def volatile(default: Any = dataclasses.MISSING, help: str = "", **metadata) -> Any:
    """A config field that changes how a result is made, not what it is (batch size, URLs,
    retries, output dirs): declared once here, left out of step keys, shard keys and provenance
    by :func:`keyed` (distilabel's ``RuntimeParameter`` idea). ``default`` may be a factory
    (``list``, ``dict``).

    >>> @dataclasses.dataclass
    ... class C:
    ...     k: int = 4
    ...     batch_size: int = volatile(16, "sequences per forward pass")
    >>> keyed(C(batch_size=64))
    {'k': 4}
    """
    meta = {"help": help, "volatile": True, **metadata}
    if default in (list, dict):
        return dataclasses.field(default_factory=default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def is_volatile(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("volatile"))


def keyed(cfg: Any) -> Any:
    """The result-changing part of ``cfg`` as JSON-able data: a dataclass without its
    :func:`volatile` fields (recursively; a dataclass may narrow it further with a
    ``keyed_fields()`` method, e.g. a model role keeps only its backend's options); mappings and
    lists element-wise; anything else as ``str`` unless JSON-native."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        names = getattr(cfg, "keyed_fields", lambda: None)()
        return {f.name: keyed(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)
                if not is_volatile(f) and (names is None or f.name in names)}
    if isinstance(cfg, dict):
        return {str(k): keyed(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [keyed(v) for v in cfg]
    return cfg if cfg is None or isinstance(cfg, (bool, int, float, str)) else str(cfg)


# ---------------------------------------------------------------- CLI flags from dataclass fields
def _flags(cls: type, prefix: str = "", flag: str = ""):
    """``(dest, flag, field, type)`` of every init field; a nested dataclass field contributes its
    own fields (``problems: SourceConfig`` gives ``--source``, ``--split``, ...; dest
    ``problems__source``); with ``metadata={"prefix": True}`` its flags carry its name
    (``judge: RoleConfig`` gives ``--judge-model``, ``--judge-vllm-max-model-len``)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            inner = flag + (f.name.replace("_", "-") + "-" if f.metadata.get("prefix") else "")
            yield from _flags(hints[f.name], f"{prefix}{f.name}__", inner)
        else:
            yield prefix + f.name, flag + f.name.replace("_", "-"), f, hints[f.name]


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, prefix: str = "cfg",
                       positional: tuple[str, ...] = ()) -> None:
    """Add ``--field-name VALUE`` for every field of ``cls`` (HfArgumentParser's way). A value is
    read as YAML (``8`` -> int, ``[a, b]`` -> list) unless the field is a string; a list field's
    flag repeats; a bool flag alone means true; a field without a default is required; the fields
    named in ``positional`` are positional arguments. ``prefix`` tells apart several dataclasses
    on one parser (see :func:`overrides_from_args`).

    Fields with ``metadata={"hidden": True}`` are accepted but not listed in ``--help``.
    """
    for dest, flag, f, tp in _flags(cls):
        help_ = f.metadata.get("help", "")
        many = typing.get_origin(tp) is list   # repeat the flag: --endpoints URL1 --endpoints URL2
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        text = tp is str or typing.get_origin(tp) is typing.Literal and all(isinstance(a, str) for a in typing.get_args(tp))
        item = _item if typing.get_args(tp)[:1] in ((), (str,)) else _scalar   # list[int]: --k 1 --k 4
        kind = dict(type=item if many else str if text else _scalar, default=argparse.SUPPRESS)
        if f.name in positional:
            parser.add_argument(f"{prefix}__{dest}", metavar=f.name, help=help_, **kind,
                                nargs=("+" if required else "*") if many else None if required else "?")
            continue
        if tp is bool:
            kind.update(nargs="?", const=True)
        parser.add_argument(
            "--" + flag, dest=f"{prefix}__{dest}", metavar=f.name.upper(), required=required, **kind,
            action="append" if many else "store",
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


def _item(raw: str):
    """One value of a repeated flag: a string, or a whole YAML list (``"[a, b]"``)."""
    return _scalar(raw) if raw.lstrip().startswith("[") else raw


def overrides_from_args(args: argparse.Namespace, prefix: str = "cfg") -> dict:
    """The ``--field`` values the user typed (see :func:`add_dataclass_args`), nested as the
    config is (``cfg__problems__source`` → ``{"problems": {"source": ...}}``)."""
    out: dict = {}
    for key, value in vars(args).items():
        if key.startswith(prefix + "__"):
            if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
                value = value[0]      # a repeated flag given one "[a, b]": the whole list
            *parents, leaf = key[len(prefix) + 2:].split("__")
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
