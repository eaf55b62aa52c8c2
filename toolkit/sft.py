"""How SFT sees a TRACE row: TRL's conversational prompt-completion format, in one place for
``train`` (the loss) and the adaptation-cost diagnostic (the very same tokens).

The prompt is re-rendered with the template named in ``prompt_id`` (the same messages the sampler
sent); the completion is one assistant turn.

Example:
    >>> from datasets import Dataset
    >>> from toolkit.prompts import load_prompt
    >>> rows = Dataset.from_dict({"question": ["1+1?"], "completion": ["2"], "trace_id": ["p#0"],
    ...                           "prompt_id": [load_prompt("math_cot").id]})
    >>> to_chat(rows)[0]["completion"]
    [{'role': 'assistant', 'content': '2'}]
"""
from __future__ import annotations

from functools import lru_cache

from .config import ConfigError

REQUIRED_COLUMNS = ("question", "completion", "prompt_id", "trace_id")


class TrainDataError(ConfigError):
    """The training data is missing, empty or has a row that cannot be turned into an example
    (a ``ConfigError``, so ``qup`` prints it as one line)."""


@lru_cache(maxsize=None)
def _template(prompt_id: str):
    from .prompts import load_prompt
    name = prompt_id.split("@", 1)[0]
    template = load_prompt(name)
    if "@" in prompt_id and template.id != prompt_id:
        raise TrainDataError(f"prompt_id {prompt_id!r}: template {name!r} is now {template.id} (its text "
                             "changed since sampling), so the training prompt would differ from the sampled one")
    return template


def to_chat(ds):
    """TRACE rows → ``{"prompt": [user msg], "completion": [assistant msg]}`` rows (TRL format)."""
    from datasets import Dataset

    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if missing:
        raise TrainDataError(f"training data lacks column(s) {missing}; has {ds.column_names}")
    prompts, completions = [], []
    for row in ds.select_columns(list(REQUIRED_COLUMNS)):
        where = f"row {row['trace_id'] or len(prompts)}"
        if not row["prompt_id"]:
            raise TrainDataError(f"{where}: empty prompt_id")
        if not (row["completion"] or "").strip():
            raise TrainDataError(f"{where}: empty completion")
        try:
            template = _template(row["prompt_id"])
        except TrainDataError as e:
            raise TrainDataError(f"{where}: {e}") from None
        except ValueError as e:
            raise TrainDataError(f"{where}: prompt_id {row['prompt_id']!r}: {e}") from None
        prompts.append(template.messages(row["question"]))
        completions.append([{"role": "assistant", "content": row["completion"]}])
    return Dataset.from_dict({"prompt": prompts, "completion": completions})
