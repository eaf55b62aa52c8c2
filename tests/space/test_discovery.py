"""Discovery and leaderboard over a published experiment on an embedded Hub; results dataset path."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ALICE
from tests.space.conftest import DATASET, VARIANTS
from toolkit.space.discovery import discover, pick
from toolkit.space.leaderboard import aggregate, from_cards, leaderboard, table
from toolkit.stats import wilson


def test_discover_groups_adapters_by_their_dataset(experiment, space_api):
    from huggingface_hub import HfApi
    writer = HfApi(endpoint=experiment.url, token=ALICE)     # a qup-tagged model of no experiment
    writer.create_repo("alice/stray")
    writer.upload_file(path_or_fileobj=b"---\ntags: [qup]\n---\n", path_in_repo="README.md", repo_id="alice/stray")
    [exp] = discover(space_api)
    assert exp.dataset_repo == DATASET and exp.base_model == "qup/tiny-random-llama"
    assert exp.variants == sorted(VARIANTS) and exp.prompt == "math_cot" and exp.results_repo == ""
    rft = exp.adapter("rft")
    assert rft.repo_id == experiment.adapters["rft"] and rft.revision == "v1"
    assert (rft.dataset_repo, rft.dataset_config, rft.dataset_revision) == (DATASET, "rft", "v1")
    assert rft.evals == [{"dataset": "mawps", "split": "test", "accuracy": 0.15, "correct": 3, "total": 20}]
    reward = exp.train_stats["oracle_refine"]["reward"]
    assert reward["mean"] == pytest.approx(0.9, abs=1e-3) and reward["lo"] < 0.9 < reward["hi"]
    assert pick([exp], DATASET) is exp and pick([exp], "nope/x") is None and pick([]) is None
    assert discover(space_api, author="bob") == []


def test_leaderboard_from_cards(experiment, space_api):
    [exp] = discover(space_api)
    rows, note = leaderboard(space_api, exp)
    assert "model cards" in note
    assert [r.variant for r in rows] == ["base", "oracle_refine", "rft"]
    base, oracle, rft = rows
    assert base.accuracy is None and base.adapter == ""            # the base model has no card
    assert (rft.correct, rft.total, rft.accuracy) == (3, 20, 0.15)
    assert (rft.ci_low, rft.ci_high) == pytest.approx(wilson(3, 20))
    assert rft.nll == pytest.approx(0.6, abs=1e-3) and oracle.reward == pytest.approx(0.9, abs=1e-3)
    assert rft.adapter == f"{experiment.adapters['rft']}@v1" and rft.dataset == f"{DATASET}@v1 (rft)"
    cells = table(rows)
    assert cells[2][2:5] == ["15.0%", "3/20", f"{100 * wilson(3, 20)[0]:.1f}%–{100 * wilson(3, 20)[1]:.1f}%"]
    assert cells[0][2] == "—"


PUSH = """
import json, sys
from datasets import Dataset
from huggingface_hub import HfApi
from toolkit.schema import RESULTS
rows, repo = json.loads(sys.argv[1]), sys.argv[2]
Dataset.from_list(rows, features=RESULTS).push_to_hub(repo)
HfApi().upload_file(path_or_fileobj=b"---\\ntags: [qup, qup-results]\\n---\\n# results\\n",
                    path_in_repo="README.md", repo_id=repo, repo_type="dataset")
"""


def _result(variant, seed, correct, total=20, **kw):
    from toolkit.schema import RESULTS, empty_row
    return {**empty_row(RESULTS), "variant": variant, "seed": seed, "benchmark": "mawps", "split": "test",
            "correct": correct, "total": total, "accuracy": correct / total, "dataset_repo": DATASET,
            "dataset_revision": "v1", "adapter_repo": "" if variant == "base" else f"{DATASET}-{variant}-lora",
            "adapter_revision": "" if variant == "base" else "v1", **kw}


def test_leaderboard_reads_the_results_dataset(experiment, space_api, tmp_path):
    rows = [_result("base", -1, 2), _result("rft", 0, 3, reward=0.7, nll=0.6),
            _result("rft", 1, 5, reward=0.7, nll=0.6), _result("oracle_refine", 0, 1, reward=0.9, nll=1.2)]
    env = {"HF_ENDPOINT": experiment.url, "HF_TOKEN": ALICE, "HF_HUB_DISABLE_XET": "1",
           "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_CACHE": str(tmp_path / "ds"), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", PUSH, json.dumps(rows), f"{DATASET}-results"], env=env, check=True,
                   cwd=str(__import__("pathlib").Path(__file__).parents[2]), timeout=300)
    try:
        [exp] = discover(space_api)
        got, note = leaderboard(space_api, exp)
    finally:   # the session's Hub is shared: other tests see the experiment without results
        from huggingface_hub import HfApi
        HfApi(endpoint=experiment.url, token=ALICE).delete_repo(f"{DATASET}-results", repo_type="dataset")
    assert exp.results_repo == f"{DATASET}-results"
    assert "results dataset" in note
    by = {r.variant: r for r in got}
    assert [r.variant for r in got] == ["base", "oracle_refine", "rft"]
    rft = by["rft"]
    assert (rft.correct, rft.total, rft.seeds) == (8, 40, 2)        # pooled over seeds
    assert rft.accuracy == pytest.approx((0.15 + 0.25) / 2)        # mean of per-seed accuracies
    # the interval counts problems, not problems x seeds: both seeds answered the same 20
    assert (rft.ci_low, rft.ci_high) == pytest.approx(wilson(4, 20))
    assert rft.ci_high - rft.ci_low > wilson(8, 40)[1] - wilson(8, 40)[0]
    assert rft.reward == pytest.approx(0.7) and rft.adapter == f"{DATASET}-rft-lora@v1"
    assert by["base"].accuracy == pytest.approx(0.1) and by["base"].adapter == ""


def test_aggregate_keeps_benchmarks_apart_and_handles_missing_scores():
    rows = aggregate([_result("rft", 0, 4, benchmark="gsm8k"), _result("rft", 0, 2), _result("base", -1, 1)])
    assert [(r.variant, r.benchmark, r.correct) for r in rows] == [
        ("rft", "gsm8k", 4), ("base", "mawps", 1), ("rft", "mawps", 2)]
    assert rows[0].reward is None and rows[0].nll is None
