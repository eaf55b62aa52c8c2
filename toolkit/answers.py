"""Final-answer extraction and verification against a gold answer (math-verify, bounded time).

``extract_answer`` finds what a model (or a gold solution) gave as its final answer;
``verify`` compares it with the gold answer and returns one status of :data:`STATUSES`.
Plain numbers are compared directly (exact); anything else goes through math-verify in a
persistent worker process that is killed when a check passes ``timeout_s``, so hostile input
(huge powers, deep LaTeX) never hangs the caller, from any thread.

Example:
    >>> extract_answer("6 + 12 = 18.\\nThe answer is: $18")
    '18'
    >>> verify("18", "18"), verify("17", "18"), verify(None, "18")
    ('correct', 'wrong', 'no_answer')
    >>> verify("3", "")
    'unverifiable_gold'
"""
from __future__ import annotations

import atexit
import json
import os
import re
import select
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

from .errors import QupError

STATUSES = ("correct", "wrong", "no_answer", "unverifiable_gold", "timeout")
MAX_ANSWER_CHARS = 1000     # a longer extracted answer is "wrong" without parsing it
_MAX_NUMBER_CHARS = 400     # longer digit strings skip the exact numeric fast path
_WORKER_MEMORY = 3 << 30    # address-space cap of the math-verify worker (bytes)


class AnswerError(QupError, ValueError):
    """An answer or gold answer cannot be used as given (e.g. a bad timeout)."""


# ------------------------------------------------------------------------------ extraction
# 1,234.5 | 1234.5 | .5 | 3/4, with optional sign, "$" and "%"
_NUMBER_RE = re.compile(r"(?<![\w.])(-?)\\?\$?\s?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
                        r"(?:/(\d+))?(%?)")
# "#### N" | "... the answer is: X" | a line starting "Answer: X" | \boxed{X}
_MARKER_RE = re.compile(r"####|\banswer\s+is\s*:?|^[ \t*#>-]*(?:final\s+)?answer\s*\**\s*[:=]"
                        r"|\\boxed\s*\{|\\fbox\s*\{", re.IGNORECASE | re.MULTILINE)
_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**"))


def _braced(text: str, open_at: int) -> str | None:
    """Content of the ``{...}`` starting at ``text[open_at] == '{'`` (nested braces), or None."""
    depth = 0
    for i in range(open_at, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1:i]
    return None


def _norm_number(m: re.Match) -> str:
    sign, digits, denom, _pct = m.groups()
    digits = digits.replace(",", "")
    if digits.startswith("."):
        digits = "0" + digits
    return f"{sign}{digits}" + (f"/{denom}" if denom else "")


def numbers_in(text: str) -> list[str]:
    """Plain numbers in ``text``, normalised (``"$1,250 and 3/4"`` → ``["1250", "3/4"]``)."""
    return [_norm_number(m) for m in _NUMBER_RE.finditer(text)]


def _last_number(text: str) -> str | None:
    last = None
    for last in _NUMBER_RE.finditer(text):
        pass
    return _norm_number(last) if last else None


def _clean(candidate: str) -> str | None:
    """Trim an answer found after a marker: wrappers, trailing period, units after a number."""
    s = candidate.strip().replace("**", "").strip()
    if s.startswith("$"):  # "$\frac{1}{2}$. I hope it is correct." → the math span
        delim = "$$" if s.startswith("$$") else "$"
        end = s.find(delim, len(delim))
        s = s[:end + len(delim)] if end > 0 else s
    else:  # "18 apples. Then ..." → first sentence ("3.5" keeps its point)
        s = re.split(r"\.(?:\s|$)", s, maxsplit=1)[0]
    if "\\boxed" in s:
        inner = extract_boxed(s)
        if inner is not None:
            s = inner
    for left, right in _WRAPPERS:
        if s.startswith(left) and s.endswith(right) and len(s) > len(left) + len(right):
            s = s[len(left):-len(right)].strip()
    s = s.rstrip(" .;,").lstrip(":").strip()
    if s.startswith("$") and s.count("$") == 1:
        s = s[1:].strip()
    if s.endswith("$") and s.count("$") == 1:
        s = s[:-1].strip()
    if not s:
        return None
    m = _NUMBER_RE.match(s)
    # "18 apples", "$5.00 per day", "25%": the number; "2k", LaTeX, expressions are kept whole
    rest = s[m.end():] if m else ""
    if m and (not rest or rest[0] in " ,;") and not re.search(r"[\d\\^_{}=+*/()\[\]]", rest):
        return _norm_number(m)
    return s


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces nested."""
    for m in reversed(list(re.finditer(r"\\(?:boxed|fbox)\s*\{", text))):
        inner = _braced(text, m.end() - 1)
        if inner is not None and inner.strip():
            return inner.strip()
    return None


def extract_answer(text: str | None) -> str | None:
    """The final answer in ``text``, or None when there is none.

    The last explicit marker wins: ``\\boxed{...}``, GSM8K ``#### N``, ``The answer is: X`` /
    ``the answer is X`` / ``Answer: X``; else the last plain number (``1,234`` → ``1234``,
    ``$5`` → ``5``, ``50%`` → ``50``, ``3/4`` kept); "18 apples" becomes ``18``.

    >>> extract_answer("so $\\\\boxed{\\\\frac{1}{2}}$.")
    '\\\\frac{1}{2}'
    >>> extract_answer("She pays $1,250 in total.")
    '1250'
    """
    if not text:
        return None
    worded = None  # "... our answer is correct": used only when nothing stronger exists
    for m in reversed(list(_MARKER_RE.finditer(text))):
        tok = m.group(0)
        if tok.endswith("{"):  # \boxed{ / \fbox{
            inner = _braced(text, m.end() - 1)
            if inner is not None and inner.strip():
                return _clean(inner) or inner.strip()
            continue
        rest = text[m.end():].split("\n", 1)[0]
        if not rest.strip() and tok != "####":  # "Answer:\n 18"
            rest = text[m.end():].lstrip().split("\n", 1)[0]
        found = _clean(rest)
        if found and (tok == "####" or re.search(r"[\d\\]", found)):
            return found
        worded = worded or found
    return worded or _last_number(text)


# ------------------------------------------------------------------------------ verification
_PLAIN_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:/\d+)?")


def as_number(s: str) -> Fraction | None:
    """``s`` as an exact number when it is a plain one (``1,234``, ``$5``, ``-3.5``, ``3/4``)."""
    for junk in ("\\$", "\\!", "{,}", "\\,", ","):  # LaTeX dollar / thousands separators
        s = s.replace(junk, "")
    s = s.strip().strip("$").rstrip(".").strip()
    if s.endswith("\\%") or s.endswith("%"):
        return None  # leave percentages to math-verify (10% = 1/10 there)
    if not s or len(s) > _MAX_NUMBER_CHARS or not _PLAIN_NUMBER.fullmatch(s):
        return None
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def _is_text(s: str) -> bool:
    """A worded answer ("Yes", "Mrs. Hilt") rather than mathematics."""
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z .,'’-]*", s.strip())) and len(s.split()) <= 6 \
        and len(s.strip()) > 1


def _norm_text(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def verify(pred: str | None, gold: str, timeout_s: float = 5.0) -> str:
    """Status of the extracted answer ``pred`` against ``gold``; see :data:`STATUSES`.

    An empty or unparseable gold is ``"unverifiable_gold"`` whatever ``pred`` is. Plain
    numbers compare exactly in-process; the rest runs math-verify in a worker killed after
    ``timeout_s`` seconds (→ ``"timeout"``). Safe to call from any thread.

    >>> verify("0.5", "1/2"), verify("\\\\frac{1}{2}", "0.5"), verify("9" * 5000, "9")
    ('correct', 'correct', 'wrong')
    """
    if not timeout_s or timeout_s <= 0:
        raise AnswerError(f"timeout_s must be > 0, got {timeout_s!r}")
    gold = "" if gold is None else str(gold).strip()
    if not gold or len(gold) > MAX_ANSWER_CHARS:
        return "unverifiable_gold"
    pred = None if pred is None else str(pred).strip() or None
    g_num = as_number(gold)
    if g_num is not None or _is_text(gold):
        if pred is None:
            return "no_answer"
        if len(pred) > MAX_ANSWER_CHARS:
            return "wrong"
        if g_num is None:  # worded gold: compare words
            return "correct" if _norm_text(pred) == _norm_text(gold) else "wrong"
        p_num = as_number(pred)
        if p_num is not None:
            if p_num == g_num:
                return "correct"
            if p_num.denominator == 1 and g_num.denominator == 1:
                return "wrong"
    elif pred is not None and len(pred) > MAX_ANSWER_CHARS:
        pred = ""  # still check the gold, then call it wrong
    return _WORKER.check(gold, pred, timeout_s)


def grade(completion: str | None, gold: str, timeout_s: float = 5.0) -> tuple[str | None, str]:
    """``(extracted answer, status)`` of a whole completion.

    >>> grade("... so she has 7 left. The answer is: 7", "7")
    ('7', 'correct')
    """
    answer = extract_answer(completion)
    return answer, verify(answer, gold, timeout_s)


# ------------------------------------------------------------------------------ math-verify worker
def _mv_check(gold: str, pred: str | None) -> str:
    """Runs in the worker: parse gold, parse pred, compare (no signal timeouts here)."""
    from math_verify import parse
    from math_verify import verify as mv_verify

    def _parse(s: str):
        try:
            return parse(s if "$" in s or "\\boxed" in s else f"${s}$",
                         parsing_timeout=None, raise_on_error=False)
        except Exception:  # noqa: BLE001 - any parser failure means "not parseable"
            return []

    g = _parse(gold)
    if not any(not isinstance(x, str) for x in g):  # only the raw-string fallback: unparsed
        return "unverifiable_gold"
    if pred is None:
        return "no_answer"
    p = _parse(pred) if pred else []
    if not p:
        return "wrong"
    try:
        return "correct" if mv_verify(g, p, timeout_seconds=None) else "wrong"
    except Exception:  # noqa: BLE001
        return "wrong"


def _serve(memory: int = _WORKER_MEMORY) -> None:
    """Worker loop (``python -m toolkit.answers``): caps its memory, then answers one JSON
    ``[gold, pred]`` line on stdin with one JSON status line on stdout."""
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    except (ImportError, ValueError, OSError):
        pass
    import logging

    import math_verify.grader as _g
    import math_verify.parser as _p
    _g.TIMEOUT_WARNING_SHOWN = _p.TIMEOUT_WARNING_SHOWN = True  # we bound time by killing
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    out = sys.stdout
    out.write('"ready"\n')
    out.flush()
    for line in sys.stdin:
        gold, pred = json.loads(line)
        try:
            status = _mv_check(gold, pred)
        except MemoryError:
            status = "timeout"
        out.write(json.dumps(status) + "\n")
        out.flush()


class _Worker:
    """One math-verify process shared by all threads; replaced when a check overruns.

    A plain subprocess (not multiprocessing), so callers' ``__main__`` is never re-imported.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None

    def _readline(self, timeout: float) -> str | None:
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        return self._proc.stdout.readline() if ready else None

    def _start(self) -> None:
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "toolkit.answers"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, bufsize=1, env=env, cwd=root)
        if self._readline(120) != '"ready"\n':
            self.stop()
            raise RuntimeError("math-verify worker did not start")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(5)
            for f in (self._proc.stdin, self._proc.stdout):
                f.close()
        self._proc = None

    def check(self, gold: str, pred: str | None, timeout_s: float) -> str:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self.stop()
                self._start()
            try:
                self._proc.stdin.write(json.dumps([gold, pred]) + "\n")
                self._proc.stdin.flush()
                line = self._readline(timeout_s)
                if line:
                    return json.loads(line)
            except (OSError, ValueError):
                pass  # worker died (e.g. out of memory): treat like an overrun
            self.stop()
            return "timeout"


_WORKER = _Worker()
atexit.register(_WORKER.stop)

if __name__ == "__main__":
    _serve()
