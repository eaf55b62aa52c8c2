"""``--shard i/N``: the spec is validated, the split is a stable hash of the problem id."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from datasets import Dataset

from toolkit.config import ConfigError
from toolkit.sharding import Shard, check_out, shard_index, take

IDS = [f"gsm8k-train-{i:05d}" for i in range(300)]


@pytest.mark.parametrize("spec,message", [
    ("3/3", r"index must be in 0\.\.2"), ("-1/2", "expected INDEX/COUNT"), ("0/0", "must be >= 1"),
    ("1", "expected INDEX/COUNT"), ("a/b", "expected INDEX/COUNT"), ("1/2/3", "expected INDEX/COUNT")])
def test_bad_specs_are_one_clear_error(spec, message):
    with pytest.raises(ConfigError, match=message):
        Shard.parse(spec)


def test_parse():
    assert Shard.parse("2/5") == Shard(2, 5) and str(Shard.parse(" 0 / 1 ")) == "0/1"
    assert Shard.parse("") is None and Shard.parse(None) is None


def test_every_problem_in_exactly_one_shard_and_balanced():
    for n in (1, 2, 3, 7):
        owners = [[s for s in range(n) if Shard(s, n).owns(pid)] for pid in IDS]
        assert all(len(o) == 1 for o in owners)
        sizes = Counter(o[0] for o in owners)
        assert len(sizes) == n and min(sizes.values()) > len(IDS) / n * 0.6


def test_split_is_independent_of_python_hash_seed_and_row_order():
    code = ("import json,sys; from toolkit.sharding import shard_index; "
            "print(json.dumps([shard_index(i, 5) for i in json.loads(sys.argv[1])]))")
    got = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code, json.dumps(IDS[:50])], env=env,
                             capture_output=True, text=True, check=True).stdout
        got.append(json.loads(out))
    assert got[0] == got[1] == [shard_index(i, 5) for i in IDS[:50]]
    assert len(set(got[0])) == 5
    rows = Dataset.from_dict({"problem_id": IDS[:40], "x": list(range(40))})
    forward, _ = take(rows, Shard(1, 3))
    backward, _ = take(rows.select(range(39, -1, -1)), Shard(1, 3))
    assert sorted(forward["problem_id"]) == sorted(backward["problem_id"])


def test_take_records_positions_and_input():
    rows = Dataset.from_dict({"problem_id": [p for p in IDS[:10] for _ in range(2)],
                              "trace_id": [f"{p}#{i}" for p in IDS[:10] for i in range(2)],
                              "completion": ["c"] * 20})
    part, cut = take(rows, Shard(0, 2), order_by="trace_id")
    assert set(part["problem_id"]) == set(cut.problems) and cut.input_problems == 10
    assert all(rows[cut.order[t]]["trace_id"] == t for t in part["trace_id"])
    assert take(rows, None) == (rows, None)
    other = take(rows.map(lambda r: {"completion": "d"}), Shard(0, 2))[1]
    assert other.input_digest != cut.input_digest     # another input, another digest


def test_an_out_dir_holds_one_shard(tmp_path):
    cut = take(Dataset.from_dict({"problem_id": IDS[:4], "trace_id": IDS[:4]}), Shard(0, 2))[1]
    cut.record(tmp_path, "sample", {}, 0)
    check_out(tmp_path, Shard(0, 2), "sample")
    with pytest.raises(ConfigError, match="holds shard 0/2 of sample"):
        check_out(tmp_path, Shard(1, 2), "sample")
    with pytest.raises(ConfigError, match="the unsharded output"):
        check_out(tmp_path, None, "sample")


def test_split_by_chunk_gives_whole_chunks_round_robin():
    # sample's rule: chunks of `chunk` problems in input order, chunk c to shard c mod N; every
    # row of a problem (k traces) goes with it
    rows = Dataset.from_dict({"id": [p for p in IDS[:10] for _ in range(2)]})
    parts = [take(rows, Shard(s, 3), column="id", chunk=2) for s in range(3)]
    assert [p["id"] for p, _ in parts][0] == [p for p in IDS[:2] + IDS[6:8] for _ in range(2)]
    assert sorted(pid for p, _ in parts for pid in p["id"]) == sorted(rows["id"])
    assert parts[2][1].chunks == {IDS[4]: 2, IDS[5]: 2}       # each problem's chunk in the whole
    with pytest.raises(ConfigError, match=r"10 problems make 2 chunk\(s\) of 5 .*at most 2 shards"):
        take(rows, Shard(0, 3), column="id", chunk=5)
