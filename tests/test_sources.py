"""Problem sources on the real shared data, local files, a Hub-layout folder, and the CLI."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from toolkit.config import ConfigError, load_config
from toolkit.schema import PROBLEM
from toolkit.sources import SourceConfig, SourceError, check, load_problems, \
    load_problems_with_report


def _raw(path: Path, n: int = 3) -> list[dict]:
    with path.open() as f:
        return [json.loads(next(f)) for _ in range(n)]


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _sha(question: str) -> str:
    return hashlib.sha1(question.encode()).hexdigest()[:12]


# what each shared format's first rows must become, computed from the raw rows
EXPECTED = {
    "gsm8k": lambda r: (_sha(r["question"].strip()), r["question"].strip(),
                        r["answer"].rpartition("####")[2].strip().replace(",", ""),
                        r["answer"].strip()),
    "math500": lambda r: (_sha(r["question"].strip()), r["question"].strip(),
                          r["answer"].rpartition("The answer is:")[2].strip(), r["answer"].strip()),
    "mawps": lambda r: (str(r["idx"]), r["input"].strip(), _num(r["target"]), ""),
    "svamp": lambda r: (r["ID"], f"{r['Body'].strip()} {r['Question'].strip()}",
                        _num(r["Answer"]), ""),
    "asdiv": lambda r: (str(r["idx"]), f"{r['body'].strip()} {r['question'].strip()}",
                        r["answer"].split(" (")[0], ""),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_formats_load_with_stable_ids(shared_data, name):
    cfg = SourceConfig(source=str(shared_data / name), split="test")
    first = load_problems(cfg)
    again = load_problems(SourceConfig(source=name, split="test"))  # preset name, same rows
    assert first.features == PROBLEM
    assert len(first) == sum(1 for line in open(shared_data / name / "test.jsonl") if line.strip())
    assert first["id"] == again["id"] and len(set(first["id"])) == len(first)
    for row, raw in zip(first, _raw(shared_data / name / "test.jsonl")):
        key, question, gold, solution = EXPECTED[name](raw)
        assert row == {"id": f"{name}/test/{key}", "question": question, "gold_answer": gold,
                       "gold_solution": solution, "source": name, "split": "test"}
    # offset/limit slice after loading: ids do not shift with the window
    window = load_problems(SourceConfig(source=name, offset=5, limit=3))
    assert window["id"] == first["id"][5:8]
    # a seeded shuffle before the window: disjoint, reproducible random splits of one file
    train = load_problems(SourceConfig(source=name, shuffle=7, limit=len(first) - 4))
    held = load_problems(SourceConfig(source=name, shuffle=7, offset=len(first) - 4))
    assert sorted([*train["id"], *held["id"]]) == sorted(first["id"])
    assert list(train["id"]) != list(first["id"][:len(train)])
    assert held["id"] == load_problems(SourceConfig(source=name, shuffle=7, offset=len(first) - 4))["id"]


def test_bad_rows_raise_naming_file_row_field_or_are_counted(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"question": "1+1?", "answer": "1+1=2\n#### 2"},
            {"question": "", "answer": "#### 3"},                  # empty question
            {"question": "2+2?", "answer": "so 4\n#### four"},      # unparseable gold
            {"question": "3+3?", "answer": "6\n#### 6"}]
    lines = [json.dumps(r) for r in rows] + ["{not json"]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError) as e:
        load_problems(SourceConfig(source=str(path)))
    assert str(path) in str(e.value) and "row 2" in str(e.value) and "'question'" in str(e.value)

    res = load_problems_with_report(SourceConfig(source=str(path), skip_bad=True))
    assert res.bad_rows == 3
    assert res.problems["gold_answer"] == ["2", "6"]
    assert res.problems["id"][0] == f"mine/test/{_sha('1+1?')}"
    report = check(SourceConfig(source=str(path), skip_bad=True))
    assert report == {"source": "mine", "split": "test", "problems": 2, "gold_verified": 2,
                      "gold_unchecked": 0, "bad_rows": 3, "gold_failed_examples": []}


def test_undecodable_deep_and_non_string_rows_name_file_row_field(tmp_path):
    path = tmp_path / "hostile.jsonl"
    good = json.dumps({"question": "1+1?", "answer": "#### 2"}).encode()
    cases = {b'{"question": "a\xff", "answer": "#### 3"}': "field '<row>': not valid UTF-8",
             b'{"question": ' + b"[" * 100_000: "field '<row>': JSON nested too deeply",
             json.dumps({"question": 5, "answer": "#### 5"}).encode(): "field 'question': expected a string, got int",
             json.dumps({"question": ["2+2?"], "answer": "#### 4"}).encode(): "field 'question': expected a string"}
    for line, words in cases.items():
        for rows, n in (([good, line], 2), ([line, good], 1)):     # also as the first row
            path.write_bytes(b"\n".join(rows) + b"\n")
            with pytest.raises(SourceError) as e:
                load_problems(SourceConfig(source=str(path)))
            assert f"{path}: row {n}: {words}" in str(e.value), str(e.value)
        path.write_bytes(good + b"\n" + line + b"\n")
        assert load_problems_with_report(SourceConfig(source=str(path), skip_bad=True)).bad_rows == 1
    cmd = [sys.executable, "-m", "toolkit.cli", "data", "check", str(path)]   # one line, no traceback
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        f"qup: error: {path}: row 2: field 'question': expected a string, got list \"['2+2?']\" "
        "(skip_bad=true skips such rows)"]


def test_bad_gold_row_names_its_field(tmp_path):
    path = tmp_path / "svamp_like.jsonl"
    path.write_text(json.dumps({"Body": "b", "Question": "q", "Answer": 3.0, "ID": "a"}) + "\n"
                    + json.dumps({"Body": "b", "Question": "q", "Answer": "lots"}) + "\n")
    with pytest.raises(SourceError, match=r"svamp_like.jsonl: row 2: field 'Answer'"):
        load_problems(SourceConfig(source=str(path)))


def test_local_parquet_with_column_mapping(tmp_path):
    path = tmp_path / "algebra.parquet"
    datasets.Dataset.from_dict({
        "uid": ["p-1", "p-2"], "prompt": ["Solve x+1=3.", "What is 1/2 + 1/4?"],
        "target": ["2", "\\frac{3}{4}"], "worked": ["x = 3 - 1 = \\boxed{2}", "\\boxed{0.75}"],
    }).to_parquet(path)
    cfg = load_config(SourceConfig, {"source": str(path), "columns": {
        "question": "prompt", "gold_answer": "target", "gold_solution": "worked", "id": "uid"}})
    ds = load_problems(cfg)
    assert ds["id"] == ["algebra/test/p-1", "algebra/test/p-2"]
    assert ds["question"][1] == "What is 1/2 + 1/4?" and ds["gold_answer"][1] == "\\frac{3}{4}"
    assert check(cfg)["gold_verified"] == 2  # 0.75 == 3/4 through math-verify

    with pytest.raises(SourceError, match=r"column\(s\) \['answer'\] not found"):
        load_problems(SourceConfig(source=str(path), columns={"question": "prompt",
                                                              "gold_answer": "answer"}))
    with pytest.raises(SourceError, match="unknown row format"):
        load_problems(SourceConfig(source=str(path)))


def test_hub_layout_folder_through_load_dataset(tmp_path):
    """A folder laid out like a Hub repo (README configs, parquet shards) → load_dataset."""
    repo = tmp_path / "MATH-500"
    (repo / "main").mkdir(parents=True)
    (repo / "README.md").write_text(
        "---\nconfigs:\n- config_name: main\n  data_files:\n  - split: test\n"
        "    path: main/test-*\n---\n")
    datasets.Dataset.from_dict({
        "problem": ["Compute $1+1$.", "Simplify $\\frac{2}{4}$."],
        "solution": ["$1+1=\\boxed{2}$", "It is $\\boxed{\\frac{1}{2}}$."],
        "answer": ["2", "\\frac12"], "subject": ["Algebra"] * 2, "level": [1, 1],
        "unique_id": ["test/algebra/1.json", "test/algebra/2.json"],
    }).to_parquet(repo / "main" / "test-00000-of-00001.parquet")
    cfg = SourceConfig(source=str(repo), config_name="main")
    ds = load_problems(cfg)
    assert ds["id"] == ["MATH-500/test/test/algebra/1.json", "MATH-500/test/test/algebra/2.json"]
    assert ds["gold_solution"][1] == "It is $\\boxed{\\frac{1}{2}}$."
    assert check(cfg)["gold_verified"] == 2
    with pytest.raises(SourceError, match="cannot load"):
        load_problems(SourceConfig(source=str(repo), config_name="main", split="train"))


def test_source_errors_are_clear(shared_data, tmp_path, monkeypatch):
    with pytest.raises(SourceError, match="no split 'dev'"):
        load_problems(SourceConfig(source="svamp", split="dev"))
    with pytest.raises(SourceError, match="source not found"):
        load_problems(SourceConfig(source=str(tmp_path / "missing.jsonl")))
    with pytest.raises(SourceError, match="unsupported file type"):
        (tmp_path / "x.csv").write_text("a,b\n")
        load_problems(SourceConfig(source=str(tmp_path / "x.csv")))
    with pytest.raises(ConfigError, match="offset must be >= 0"):
        load_config(SourceConfig, {"source": "svamp", "offset": -1})
    # presets resolve under $QUP_SHARED_DATA first
    (tmp_path / "svamp").mkdir()
    (tmp_path / "svamp" / "test.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in _raw(shared_data / "svamp" / "test.jsonl", 2)))
    monkeypatch.setenv("QUP_SHARED_DATA", str(tmp_path))
    assert len(load_problems(SourceConfig(source="svamp"))) == 2


@pytest.mark.parametrize("name, split, rows", [
    ("gsm8k", "train", 7473), ("gsm8k", "test", 1319), ("math500", "test", 500)])
def test_gold_solutions_verify_against_gold_answers(shared_data, name, split, rows):
    report = check(SourceConfig(source=name, split=split))
    assert report["problems"] == rows and report["bad_rows"] == 0
    assert report["gold_unchecked"] == 0
    assert report["gold_verified"] / report["problems"] >= 0.995, report


def test_cli_data_check_prints_one_json_line(shared_data, tmp_path):
    cmd = [sys.executable, "-m", "toolkit.cli", "data", "check", str(shared_data / "svamp"),
           "--limit", "30", "--offset", "10"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert report["source"] == "svamp" and report["problems"] == 30 and report["bad_rows"] == 0
    failed = len(report["gold_failed_examples"])
    assert report["gold_verified"] + report["gold_unchecked"] + failed == 30
    assert report["gold_verified"] >= 29
    assert "problem/s" in out.stderr  # the tqdm bar with its rate

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "no marker"}\n')
    out = subprocess.run(cmd[:5] + [str(bad)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"qup: error: {bad}: row 1: field 'answer': no final answer ('#### N' or "
        "'The answer is: X') (skip_bad=true skips such rows)"]
