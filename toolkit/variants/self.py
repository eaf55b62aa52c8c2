"""``self``: the SLM's own traces, every one of them, verified (the paper's baseline data).

Example:
    >>> from toolkit.variants import get
    >>> get("self").parent
    'samples'
"""
from __future__ import annotations

from datasets import Dataset

from ..stages.verify import verify
from . import SAMPLES, Variant, register


def build(samples: Dataset, config=None, ctx=None) -> Dataset:
    """Every sampled trace with ``answer``/``correct``/``verify_status`` filled, labelled ``self``."""
    return verify(samples).map(lambda r: {"variant": "self"}, desc="self", load_from_cache_file=False)


register(Variant("self", SAMPLES, "raw SLM samples (k per problem), verified", build))
