"""Side-by-side answers: the evaluation prompt, streams merged as they come, the verifier's verdict.

The prompt is the experiment's template (``toolkit.prompts``, ``math_cot`` by default), the
answer is extracted and graded by ``toolkit.answers.grade``: the same as ``qup evaluate``.
Benchmark problems come from ``toolkit.sources`` (``../shared/data`` locally, a Hub dataset on a
Space); when none can be loaded the picker is simply empty.

Example:
    >>> for panels in compare(backend, ["base", "rft"], "What is 2+3?", gold="5", max_new_tokens=64):  # doctest: +SKIP
    ...     pass                                                              # doctest: +SKIP
    >>> panels[1].answer, panels[1].verdict                                   # doctest: +SKIP
    ('5', 'correct')
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Iterator

from ..answers import extract_answer, grade
from ..prompts import load_prompt

log = logging.getLogger(__name__)
MAX_PROBLEMS = 200


@dataclass
class Panel:
    model: str
    text: str = ""
    done: bool = False
    answer: str | None = None
    verdict: str = ""          # "correct" | "wrong" | ... from toolkit.answers; "" without a gold answer
    error: str = ""

    def markdown(self) -> str:
        head = f"### {self.model}\n\n"
        body = self.text.strip() or ("…" if not self.done else "(empty answer)")
        tail = ""
        if self.error:
            tail = f"\n\n**Error:** {self.error}"
        elif self.done:
            tail = f"\n\n**Final answer:** `{self.answer}`" if self.answer is not None else \
                "\n\n**Final answer:** none found"
            if self.verdict:
                tail += " — ✅ correct" if self.verdict == "correct" else f" — ❌ {self.verdict}"
        return head + _escape(body) + tail


def _escape(text: str) -> str:
    """Model text shown as text: no HTML, no images or links fetched by the visitor's browser."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("![", "!\u200b[")


def messages(question: str, prompt: str = "math_cot") -> list[dict]:
    try:
        template = load_prompt(prompt)
    except ValueError:
        template = load_prompt("math_cot")
    return template.messages(question)


def compare(backend, models: list[str], question: str, gold: str | None, max_new_tokens: int,
            prompt: str = "math_cot") -> Iterator[list[Panel]]:
    """Yield the panels of ``models`` each time any of them gets new text; the last yield is final."""
    panels = [Panel(m) for m in models]
    chat = messages(question, prompt)
    events: queue.Queue = queue.Queue()

    def run(i: int):
        try:
            for piece in backend.stream(models[i], chat, max_new_tokens):
                events.put((i, piece, None))
        except Exception as e:  # noqa: BLE001 - shown in that model's panel only
            log.warning("generation for %s failed: %s", models[i], e)
            events.put((i, None, f"generation failed ({type(e).__name__})"))
            return
        events.put((i, None, ""))
    for i in range(len(models)):
        threading.Thread(target=run, args=(i,), daemon=True).start()
    left = len(models)
    while left:
        i, piece, error = events.get()
        p = panels[i]
        if piece is not None:
            p.text += piece
        else:
            left -= 1
            p.done, p.error = True, error
            if not error:
                if gold:
                    p.answer, p.verdict = grade(p.text, gold)
                else:
                    p.answer = extract_answer(p.text)
        yield panels


def load_benchmark(source: str, split: str = "test", limit: int = MAX_PROBLEMS) -> tuple[list[dict], str]:
    """``(problems as {id, question, gold_answer}, message)``; no problems and a reason when absent."""
    from ..sources import SourceConfig, load_problems
    if not source:
        return [], "No benchmark source configured (QUP_SPACE_PROBLEMS)."
    try:
        ds = load_problems(SourceConfig(source=source, split=split, limit=limit, skip_bad=True))
    except Exception as e:  # noqa: BLE001 - absent data is an empty picker, not an error page
        log.info("benchmark %s/%s not available: %s", source, split, e)
        return [], f"Benchmark problems of `{source}` are not available here."
    rows = [{"id": r["id"], "question": r["question"], "gold_answer": r["gold_answer"]} for r in ds]
    return rows, f"{len(rows)} problems from `{source}` ({split})."
