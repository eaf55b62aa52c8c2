"""Versioned prompt templates (package data). A template's id is ``<name>@<sha1 of text>[:8]``,
so any edit to a template's text changes the id recorded in every row it produced.

Example:
    >>> t = load_prompt("math_cot")
    >>> t.messages("What is 2+3?")[0]["role"]
    'user'
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.name}@{hashlib.sha1(self.text.encode()).hexdigest()[:8]}"

    def messages(self, question: str, **fields: str) -> list[dict]:
        """The chat messages (user turn) for ``question`` (and any other ``{field}`` of the
        template, e.g. ``solution``); the model's chat template does the rest."""
        text = self.text
        for name, value in {"question": question, **fields}.items():
            text = text.replace("{" + name + "}", str(value).strip())
        return [{"role": "user", "content": text}]


def load_prompt(name_or_path: str) -> PromptTemplate:
    """A packaged template by name (``math_cot``) or a ``.txt`` file containing ``{question}``."""
    path = Path(name_or_path)
    if path.suffix == ".txt" and path.is_file():
        text, name = path.read_text(), path.stem
    else:
        res = resources.files(__package__) / f"{name_or_path}.txt"
        if not res.is_file():
            names = sorted(p.name[:-4] for p in resources.files(__package__).iterdir()
                           if p.name.endswith(".txt"))
            raise ValueError(f"unknown prompt template {name_or_path!r}; packaged: {names}")
        text, name = res.read_text(), name_or_path
    if "{question}" not in text:
        raise ValueError(f"prompt template {name_or_path!r} has no {{question}} placeholder")
    return PromptTemplate(name, text)
