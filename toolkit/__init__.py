"""QUP toolkit: distil math reasoning into small LMs without the Quality-Utility Paradox.

The public API, imported on first use (PEP 562): ``import toolkit`` loads no model library.

Example:
    >>> from toolkit import SampleConfig, SourceConfig, load_problems, sample, verify
    >>> problems = load_problems(SourceConfig(source="svamp", limit=2))           # doctest: +SKIP
    >>> cfg = SampleConfig(k=2, max_new_tokens=32)                                 # doctest: +SKIP
    >>> traces = verify(sample(problems, cfg, cfg.generator()))                    # doctest: +SKIP
    >>> import toolkit; toolkit.__version__                                        # doctest: +ELLIPSIS
    '...'
"""
from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qup-toolkit")
except PackageNotFoundError:      # a source tree that was never installed
    __version__ = "0+unknown"

# public name -> the module that defines it
_API = {
    # recipes: the whole pipeline
    "run_recipe": "toolkit.run", "load_recipe": "toolkit.run", "RunConfig": "toolkit.run",
    "run_study": "toolkit.study",
    # problems and traces
    "SourceConfig": "toolkit.sources", "load_problems": "toolkit.sources",
    "load": "toolkit.io", "save": "toolkit.io",
    # stages: a function over datasets and a config dataclass each
    "sample": "toolkit.stages.sample", "SampleConfig": "toolkit.stages.sample",
    "verify": "toolkit.stages.verify",
    "score": "toolkit.stages.score", "ScoreConfig": "toolkit.stages.score", "Scorers": "toolkit.stages.score",
    "train": "toolkit.stages.train", "TrainConfig": "toolkit.stages.train",
    "evaluate": "toolkit.stages.evaluate", "EvaluateConfig": "toolkit.stages.evaluate",
    # extending: model roles, variants, diagnostic columns
    "RoleConfig": "toolkit.generation.roles", "make_generator": "toolkit.generation",
    "Variant": "toolkit.variants", "BuildContext": "toolkit.variants",
    "register_variant": ("toolkit.variants", "register"), "get_variant": ("toolkit.variants", "get"),
    "Column": "toolkit.diagnostics.columns",
    "register_column": ("toolkit.diagnostics.columns", "register"),
    # publishing
    "publish_dataset": "toolkit.publishing.publish", "publish_adapter": "toolkit.publishing.publish",
    "QupError": "toolkit.errors",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'toolkit' has no attribute {name!r}")
    module, attr = _API[name] if isinstance(_API[name], tuple) else (_API[name], name)
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value          # the next access skips __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
