"""Problem sources: shared-data folders, local files and Hub datasets → ``PROBLEM`` rows.

A source is a preset name (``gsm8k``, ``math500``, ``mawps``, ``svamp``, ``asdiv``: folders of the
shared data dir), a folder like ``../shared/data/svamp`` holding ``<split>.jsonl``, a local
``.jsonl``/``.json``/``.parquet`` file, a local dataset folder, or a Hub dataset id. The row format
is recognised from the columns (or given with ``columns``). Every problem gets a stable id
``<source>/<split>/<key>``: the row's own id column when it has one, else a hash of the question.

Example:
    >>> ds = load_problems(SourceConfig(source="svamp", limit=2))   # doctest: +SKIP
    >>> ds[0]["id"], ds[0]["gold_answer"]                            # doctest: +SKIP
    ('svamp/test/chal-777', '145')
"""
from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import random
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator

from tqdm.auto import tqdm

from .answers import as_number, extract_answer, numbers_in, verify
from .errors import QupError
from .schema import PROBLEM

log = logging.getLogger(__name__)

PRESETS = ("gsm8k", "math500", "mawps", "svamp", "asdiv")
HUB_CONFIGS = {"openai/gsm8k": "main"}  # Hub ids whose default config is not the only one
OUR_FIELDS = ("id", "question", "gold_answer", "gold_solution")
_SPLIT_NAMES = {"train", "test", "validation", "valid", "dev", "eval"}
_ID_COLUMNS = ("id", "ID", "unique_id", "idx")


class SourceError(QupError, ValueError):
    """A problem source is missing, unreadable or has a bad row (named by file, row, field)."""


@dataclass
class SourceConfig:
    source: str = field(default="", metadata={"help": "preset (gsm8k|math500|mawps|svamp|asdiv), "
                        "shared-data folder, local .jsonl/.json/.parquet, or Hub dataset id"})
    split: str = field(default="test", metadata={"help": "split to load (e.g. train, test)"})
    limit: int | None = field(default=None, metadata={"help": "keep at most this many problems"})
    offset: int = field(default=0, metadata={"help": "skip this many problems first"})
    shuffle: int | None = field(default=None, metadata={
        "help": "seed of a fixed permutation of the rows before offset/limit (disjoint random splits)"})
    columns: dict[str, str] = field(default_factory=dict, metadata={
        "help": "our field -> their column, e.g. {question: problem, gold_answer: answer}"})
    config_name: str | None = field(default=None, metadata={"help": "Hub dataset config name"})
    skip_bad: bool = field(default=False, metadata={"help": "skip (and count) bad rows"})
    exclude: list[str] = field(default_factory=list, metadata={
        "help": "problem ids left out after offset/limit (decontamination: toolkit.decontaminate)"})

    def __post_init__(self):
        if self.offset < 0:
            raise SourceError(f"offset must be >= 0, got {self.offset}")
        if self.limit is not None and self.limit < 0:
            raise SourceError(f"limit must be >= 0 or null, got {self.limit}")
        unknown = sorted(set(self.columns) - set(OUR_FIELDS))
        if unknown:
            raise SourceError(f"columns: unknown field(s) {unknown}; valid: {list(OUR_FIELDS)}")


@dataclass
class LoadResult:
    """What :func:`load_problems_with_report` read: problems, skipped rows, gold evidence."""
    problems: Any            # datasets.Dataset with features PROBLEM
    source: str
    bad_rows: int = 0
    # per problem, what check() verifies the gold against: ("text", solution) → its extracted
    # answer; ("expr", "3+4") → its arithmetic value; None → nothing to check in this format
    evidence: list = field(default_factory=list)


class _Bad(Exception):
    def __init__(self, field_: str, msg: str):
        super().__init__(msg)
        self.field = field_


# ---------------------------------------------------------------------------- row formats
def _text(row: dict, col: str, field_: str | None = None) -> str:
    value = row.get(col)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _Bad(field_ or col, "missing or empty")
    if not isinstance(value, str):   # a number or a list is not a question's text
        raise _Bad(field_ or col, f"expected a string, got {type(value).__name__} {str(value)[:60]!r}")
    return value.strip()


def _number(row: dict, col: str) -> str:
    value = row.get(col)
    num = as_number(str(value)) if isinstance(value, (int, float, str)) else None
    if num is None:
        raise _Bad(col, f"gold answer is not a number: {value!r}")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip().replace(",", "")


def _qa(row: dict):
    """gsm8k ``answer`` ends ``#### N``; math500 ``answer`` ends ``The answer is: X``."""
    answer = _text(row, "answer")
    if "####" in answer:
        body, _, gold = answer.rpartition("####")
        if as_number(gold) is None:
            raise _Bad("answer", f"'#### N' is not a number: {gold.strip()!r}")
        gold = gold.strip().replace(",", "")
    elif "The answer is:" in answer:
        body, _, gold = answer.rpartition("The answer is:")
        gold = gold.strip()
    else:
        raise _Bad("answer", "no final answer ('#### N' or 'The answer is: X')")
    if not gold:
        raise _Bad("answer", "final answer is empty")
    # gsm8k: the final step must state the "#### N" answer; math500: its \boxed{} answer
    return _text(row, "question"), gold, answer, ("step" if "####" in answer else "text", body)


def _math500_hub(row: dict):
    solution = _text(row, "solution")
    return _text(row, "problem"), _text(row, "answer"), solution, ("text", solution)


def _mawps(row: dict):
    return _text(row, "input"), _number(row, "target"), "", None


def _svamp(row: dict):
    question = f"{_text(row, 'Body').rstrip()} {_text(row, 'Question')}"
    equation = row.get("Equation")
    return question, _number(row, "Answer"), "", ("expr", equation) if equation else None


def _asdiv(row: dict):
    question = f"{_text(row, 'body').rstrip()} {_text(row, 'question')}"
    gold = re.sub(r"\s*\([^()]*\)\s*$", "", _text(row, "answer")).strip()  # "9 (apples)" → "9"
    if not gold:
        raise _Bad("answer", f"gold answer is empty: {row.get('answer')!r}")
    if as_number(gold) is None:  # worded answers ("Yes", "Mrs. Hilt"): nothing to compute
        return question, gold, "", None
    # check "a+b=N" formulas only (not "47/6=7 r5", "4+5=9 apples < 10 apples")
    lhs, _, rhs = str(row.get("formula") or "").split(";")[-1].rpartition("=")
    ev = ("expr", lhs) if lhs.strip() and as_number(rhs) is not None else None
    return question, gold.replace(",", ""), "", ev


# (required columns, adapter), tried in order; ``question``+``answer`` last (asdiv has both)
_FORMATS = {
    "svamp": ({"Body", "Question", "Answer"}, _svamp),
    "asdiv": ({"body", "question", "answer"}, _asdiv),
    "math500_hub": ({"problem", "solution", "answer"}, _math500_hub),
    "mawps": ({"input", "target"}, _mawps),
    "qa": ({"question", "answer"}, _qa),
}


def _mapped(columns: dict[str, str]):
    """Adapter for a user column mapping (our field → their column)."""
    def adapter(row: dict):
        question = _text(row, columns["question"])
        solution = str(row.get(columns.get("gold_solution", ""), "") or "").strip()
        if "gold_answer" in columns:
            if isinstance(row.get(columns["gold_answer"]), (int, float)):
                gold = _number(row, columns["gold_answer"])
            else:
                gold = _text(row, columns["gold_answer"])
                if "####" in gold:
                    gold = gold.rpartition("####")[2].strip().replace(",", "")
        else:
            gold = extract_answer(solution)
            if not gold:
                raise _Bad(columns.get("gold_solution", "gold_solution"), "no final answer found")
        return question, gold, solution, ("text", solution) if solution else None
    return adapter


def _pick_format(columns: Iterable[str], cfg: SourceConfig, where: str):
    cols = set(columns)
    if cfg.columns:
        if "question" not in cfg.columns or not {"gold_answer", "gold_solution"} & set(cfg.columns):
            raise SourceError("columns: map at least 'question' and 'gold_answer' "
                              f"(or 'gold_solution'), got {cfg.columns}")
        missing = sorted(set(cfg.columns.values()) - cols)
        if missing:
            raise SourceError(f"{where}: column(s) {missing} not found; it has {sorted(cols)}")
        return _mapped(cfg.columns)
    for required, adapter in _FORMATS.values():
        if required <= cols:
            return adapter
    raise SourceError(f"{where}: unknown row format with columns {sorted(cols)}; map them with "
                      "columns={question: ..., gold_answer: ...}")


def _row_key(row: dict, cfg: SourceConfig, question: str) -> str:
    id_cols = [cfg.columns["id"]] if "id" in cfg.columns else _ID_COLUMNS
    for col in id_cols:
        value = row.get(col)
        if value is not None and str(value).strip():
            return str(value).strip()
    return hashlib.sha1(question.encode("utf-8")).hexdigest()[:12]


# ---------------------------------------------------------------------------- locating a source
def shared_data_dir() -> Path | None:
    """``$QUP_SHARED_DATA``, else ``../shared/data`` from the cwd, else from the repo root."""
    env = os.environ.get("QUP_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates += [Path.cwd() / ".." / "shared" / "data",
                   Path(__file__).resolve().parents[1] / ".." / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None


def _split_files(folder: Path) -> list[str]:
    """Splits of a shared-data style folder (``test.jsonl``, ``train.jsonl``), else []."""
    stems = sorted(p.stem for p in folder.glob("*.jsonl"))
    return stems if stems and set(stems) <= _SPLIT_NAMES else []


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict | None, str]]:
    """``(line number, row or None, error)`` for each non-blank line."""
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield n, None, f"not valid UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1})"
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield n, None, f"invalid JSON ({e.msg})"
                continue
            except RecursionError:
                yield n, None, "JSON nested too deeply"
                continue
            yield (n, row, "") if isinstance(row, dict) else (n, None, "not a JSON object")


def _load_table(*args, where: str, **kwargs):
    import datasets
    try:
        return datasets.load_dataset(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - any loader failure becomes one clear line
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SourceError(f"{where}: cannot load: {msg}") from None


def _open(cfg: SourceConfig) -> tuple[str, str, list[str] | None, Iterator]:
    """``cfg.source`` → ``(name, where, columns, iterator of (row number, row, error))``."""
    src = cfg.source.strip()
    if not src:
        raise SourceError("source is required (a preset, folder, file or Hub dataset id)")
    path = Path(src).expanduser()
    if src in PRESETS and not path.exists():
        root = shared_data_dir()
        if root is None:
            raise SourceError(f"source {src!r}: shared data dir not found (set QUP_SHARED_DATA "
                              "or put it at ../shared/data)")
        path = root / src
    if path.is_dir() and (path / f"{cfg.split}.jsonl").is_file():  # shared-data layout
        path = path / f"{cfg.split}.jsonl"
        name = path.parent.name
    elif path.is_dir() and _split_files(path):
        raise SourceError(f"{path}: no split {cfg.split!r} (has {_split_files(path)})")
    elif path.is_dir():  # a dataset folder: let `datasets` find the split's files
        ds = _load_table(str(path), cfg.config_name, split=cfg.split, where=str(path))
        return path.name, str(path), ds.column_names, ((i, r, "") for i, r in enumerate(ds, 1))
    else:
        name = path.parent.name if path.stem in _SPLIT_NAMES else path.stem
    if path.is_file():
        where = str(path)
        if path.suffix == ".jsonl":
            rows = list(_read_jsonl(path))
            cols = next((list(r) for _, r, _ in rows if r is not None), [])
            bad = next(((n, err) for n, r, err in rows if r is None), None)
            if not cols and bad:   # no good row to tell the format by: name the first bad one
                raise SourceError(f"{where}: row {bad[0]}: field '<row>': {bad[1]}")
            return name, where, cols, iter(rows)
        if path.suffix in (".json", ".parquet"):
            ds = _load_table(path.suffix[1:], data_files=str(path), split="train", where=where)
            return name, where, ds.column_names, ((i, r, "") for i, r in enumerate(ds, 1))
        raise SourceError(f"{path}: unsupported file type {path.suffix!r} "
                          "(use .jsonl, .json or .parquet)")
    if path.suffix in (".jsonl", ".json", ".parquet") or src.startswith((".", "/", "~")) \
            or src.count("/") > 1:
        raise SourceError(f"source not found: {src}")
    config = cfg.config_name or HUB_CONFIGS.get(src)
    ds = _load_table(src, config, split=cfg.split, where=f"hub:{src}")
    return src, f"hub:{src}", ds.column_names, ((i, r, "") for i, r in enumerate(ds, 1))


# ---------------------------------------------------------------------------- public API
def load_problems_with_report(cfg: SourceConfig) -> LoadResult:
    """Load ``cfg.source`` as PROBLEM rows, with the count of skipped bad rows."""
    import datasets

    name, where, columns, rows = _open(cfg)
    adapter = _pick_format(columns or [], cfg, where)
    out = {k: [] for k in PROBLEM}
    evidence, seen, bad = [], {}, 0
    for n, row, error in rows:
        try:
            if row is None:
                raise _Bad("<row>", error)
            question, gold, solution, ev = adapter(row)
        except _Bad as e:
            msg = f"{where}: row {n}: field {e.field!r}: {e}"
            if not cfg.skip_bad:
                raise SourceError(msg + " (skip_bad=true skips such rows)") from None
            bad += 1
            log.warning("skipping bad row: %s", msg)
            continue
        key = _row_key(row, cfg, question)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:  # a duplicate key: suffix by occurrence, stable for a fixed file
            key = f"{key}~{seen[key]}"
        for k, v in (("id", f"{name}/{cfg.split}/{key}"), ("question", question),
                     ("gold_answer", gold), ("gold_solution", solution), ("source", name),
                     ("split", cfg.split)):
            out[k].append(v)
        evidence.append(ev)
    order = list(range(len(evidence)))
    if cfg.shuffle is not None:
        random.Random(cfg.shuffle).shuffle(order)
    end = None if cfg.limit is None else cfg.offset + cfg.limit
    order = order[cfg.offset:end]
    out = {k: [v[i] for i in order] for k, v in out.items()}
    evidence = [evidence[i] for i in order]
    if cfg.exclude:
        drop = set(cfg.exclude)
        keep = [i for i, pid in enumerate(out["id"]) if pid not in drop]
        out, evidence = {k: [v[i] for i in keep] for k, v in out.items()}, [evidence[i] for i in keep]
    ds = datasets.Dataset.from_dict(out, features=PROBLEM)
    return LoadResult(ds, name, bad, evidence)


def load_problems(cfg: SourceConfig):
    """``datasets.Dataset`` of PROBLEM rows from ``cfg.source`` (see the module docstring)."""
    return load_problems_with_report(cfg).problems


_ARITH_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
              ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}


def eval_arithmetic(expr: str) -> Fraction | None:
    """Exact value of a ``+ - * /`` expression (``"( 290.0 / 2.0 )"`` → 145), or None."""
    if not expr or len(expr) > 500:
        return None

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return Fraction(str(node.value))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return -ev(node.operand) if isinstance(node.op, ast.USub) else ev(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH_OPS:
            return _ARITH_OPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError("not arithmetic")

    try:
        return ev(ast.parse(expr.strip(), mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return None


def _stated_in_last_step(body: str, gold: str) -> str | None:
    """The number on a GSM8K solution's last line (``<<calc>>`` notes dropped) equal to
    ``gold``, else that line's last number (or None)."""
    lines = [ln for ln in re.sub(r"<<[^>]*>>", "", body).splitlines() if ln.strip()]
    numbers = numbers_in(lines[-1]) if lines else []
    target = as_number(gold)
    return next((n for n in numbers if as_number(n) == target), numbers[-1] if numbers else None)


def _fmt(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else str(value)


def check(cfg: SourceConfig) -> dict:
    """Load a source and verify each problem's own gold derivation against its gold answer.

    ``gold_verified`` counts problems whose worked solution (gsm8k: the text before ``####``;
    math500: the solution before ``The answer is:``, i.e. its last ``\\boxed{}``), or equation
    (svamp ``Equation``, asdiv ``formula`` left of its last ``=``), yields the gold answer under
    :func:`toolkit.answers.verify`. Rows with nothing to check (mawps: no solution in the data;
    asdiv: formulas with units or words) count in ``gold_unchecked``, never as verified.

    >>> check(SourceConfig(source="svamp"))              # doctest: +SKIP
    {'source': 'svamp', 'split': 'test', 'problems': 1000, 'gold_verified': 999, ...}
    """
    res = load_problems_with_report(cfg)
    ds = res.problems
    verified = unchecked = 0
    failed: list[str] = []
    bar = tqdm(zip(ds["id"], ds["gold_answer"], res.evidence), total=len(ds),
               desc=f"verify {res.source}/{cfg.split}", unit="problem")
    for pid, gold, ev in bar:
        if ev is None:
            unchecked += 1
            continue
        kind, payload = ev
        if kind == "expr":
            value = eval_arithmetic(payload)
            if value is None:
                unchecked += 1
                continue
            pred = _fmt(value)
        elif kind == "step":
            pred = _stated_in_last_step(payload, gold)
        else:
            pred = extract_answer(payload)
        if verify(pred, gold) == "correct":
            verified += 1
        elif len(failed) < 10:
            failed.append(pid)
    return {"source": res.source, "split": cfg.split, "problems": len(ds),
            "gold_verified": verified, "gold_unchecked": unchecked, "bad_rows": res.bad_rows,
            "gold_failed_examples": failed}
