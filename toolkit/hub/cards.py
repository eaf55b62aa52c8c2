"""A card's YAML front matter as JSON-safe ``cardData``: bounded, and refused on commit when hostile.

YAML can say what JSON cannot (dates, ``.nan``, ``!!binary``, ``!!set``, non-string keys,
self-references) and aliases can expand a few hundred bytes into megabytes. :func:`card_json`
turns the front matter into plain JSON data (dates as ISO strings, non-finite floats as null,
binary as base64, sets as lists, keys as strings) and raises :class:`CardError` for more than
:data:`MAX_ALIASES` aliases, more than :data:`MAX_DEPTH` levels or an expansion over
:data:`MAX_JSON_CHARS`. A commit with such a README is refused (400); a listing skips its card.

Example:
    >>> card_json("---\\ndate: 2024-01-02\\nscore: .nan\\ntags: !!set {qup: null}\\n---\\n# x")
    {'date': '2024-01-02', 'score': None, 'tags': ['qup']}
"""
from __future__ import annotations

import base64
import datetime
import math

import yaml

from .errors import HubError

MAX_ALIASES = 32                 # alias uses in one card (real cards use none)
MAX_DEPTH = 64                   # nesting of lists/mappings
MAX_JSON_CHARS = 1024 ** 2       # the card data once aliases are expanded (about its JSON size)


class CardError(HubError):
    """A README whose metadata is not acceptable (answered 400 on commit)."""

    def __init__(self, message: str):
        super().__init__(400, f"Invalid metadata in README.md: {message}", "BadRequest")


class _Loader(yaml.SafeLoader):
    """SafeLoader that counts alias uses (each may expand a whole subtree)."""

    def __init__(self, stream):
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise CardError(f"more than {MAX_ALIASES} YAML aliases")
        return super().compose_node(parent, index)


def front_matter(text: str) -> str | None:
    """The YAML between the leading ``---`` lines, None when the text has none."""
    if not text.startswith("---") or "\n---" not in text:
        return None
    return text.split("\n---", 1)[0][3:]


def card_json(text: str) -> dict | None:
    """The card's metadata as JSON-safe data; None when absent or not a mapping (malformed YAML
    included, as the Hub shows no ``cardData`` then); :class:`CardError` when hostile."""
    head = front_matter(text)
    if head is None:
        return None
    loader = _Loader(head)
    try:
        data = loader.get_single_data()
    except CardError:   # a ValueError too: not "malformed"
        raise
    except RecursionError:
        raise CardError(f"nested more than {MAX_DEPTH} levels") from None
    except (yaml.YAMLError, ValueError, TypeError):  # ValueError: e.g. an int over Python's digit limit
        return None
    finally:
        loader.dispose()
    return to_json(data) if isinstance(data, dict) else None


def to_json(value, budget: list[int] | None = None, depth: int = 0):
    """``value`` as JSON data (see the module doc); :class:`CardError` past the depth/size limits."""
    budget = [MAX_JSON_CHARS] if budget is None else budget
    budget[0] -= 8
    if budget[0] < 0:
        raise CardError(f"over {MAX_JSON_CHARS} characters once YAML aliases are expanded")
    if depth > MAX_DEPTH:
        raise CardError(f"nested more than {MAX_DEPTH} levels (or self-referencing)")
    if isinstance(value, dict):
        return {_key(k): to_json(v, budget, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [to_json(v, budget, depth + 1) for v in items]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (datetime.date, datetime.datetime)):
        value = value.isoformat()
    elif isinstance(value, bytes):
        value = base64.b64encode(value).decode("ascii")
    elif value is not None and not isinstance(value, (str, int, bool)):
        value = str(value)
    if isinstance(value, str):
        budget[0] -= len(value)
        if budget[0] < 0:
            raise CardError(f"over {MAX_JSON_CHARS} characters once YAML aliases are expanded")
    return value


def _key(key) -> str:
    if isinstance(key, bool) or key is None:
        return {True: "true", False: "false", None: "null"}[key]
    return key if isinstance(key, str) else str(to_json(key, [MAX_JSON_CHARS]))


MAX_README_BYTES = 1024 ** 2     # a bigger README is never read as a card


def check_readme(data: bytes) -> None:
    """Refuse (400) a README whose metadata :func:`card_json` refuses; anything else passes."""
    if len(data) <= MAX_README_BYTES:
        card_json(data.decode("utf-8", "replace"))
