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
from toolkit.space.results import published
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
    assert exp.results_repo == "" and published(space_api, exp.results_repo) == published(space_api, "")
    rows, note = leaderboard(exp, published(space_api, exp.results_repo).results)
    assert "model cards" in note and "no results dataset published yet" in note
    assert leaderboard(exp, [], "404")[1].endswith("(the results dataset is unreadable).")
    ill = [{"variant": "rft", "benchmark": "mawps", "correct": "three", "total": 20}]
    assert leaderboard(exp, ill)[0] == rows                                     # ill-typed rows: the cards
    assert [r.variant for r in rows] == ["base", "oracle_refine", "rft"]
    base, oracle, rft = rows
    assert base.accuracy is None and base.adapter == ""            # the base model has no card
    assert (rft.correct, rft.total, rft.accuracy) == (3, 20, 0.15)
    assert (rft.ci_low, rft.ci_high) == pytest.approx(wilson(3, 20))
    assert rft.nll == pytest.approx(0.6, abs=1e-3) and oracle.reward == pytest.approx(0.9, abs=1e-3)
    assert rft.adapter == f"{experiment.adapters['rft']}@v1" and rft.dataset == f"{DATASET}@v1 (rft)"
    cells = table(rows)
    assert cells[2][3:6] == ["15.0%", "3/20", f"{100 * wilson(3, 20)[0]:.1f}%–{100 * wilson(3, 20)[1]:.1f}%"]
    assert cells[0][3] == "—"
    assert cells[2][2] == "—" and cells[2][6] == "—"    # an old card: metric and protocol not recorded


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
        results = published(space_api, exp.results_repo)
        got, note = leaderboard(exp, results.results, results.error)
    finally:   # the session's Hub is shared: other tests see the experiment without results
        from huggingface_hub import HfApi
        HfApi(endpoint=experiment.url, token=ALICE).delete_repo(f"{DATASET}-results", repo_type="dataset")
    assert exp.results_repo == f"{DATASET}-results" and results.error == "" and results.revision
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


def _adapter_card(experiment, token, repo, meta: dict, files=True):
    """A qup-tagged model repo with ``meta`` as its card (and the rft adapter's files)."""
    import yaml
    from huggingface_hub import HfApi
    api = HfApi(endpoint=experiment.url, token=token)
    api.create_repo(repo, exist_ok=True)
    if files:
        api.upload_folder(folder_path=experiment.adapter_dirs["rft"], repo_id=repo,
                          allow_patterns=["adapter_config.json", "adapter_model.safetensors"])
    api.upload_file(path_or_fileobj=f"---\n{yaml.safe_dump({'tags': ['qup'], **meta})}---\n# x\n".encode(),
                    path_in_repo="README.md", repo_id=repo)


def _page(demo) -> str:
    return json.dumps(demo.get_config_file())


FAKE = type("Fake", (), {"keys": ["base", "rft", "oracle_refine", "evil", "counts"], "kind": "fake"})()


def test_the_space_reads_only_its_owners_namespace(experiment, space_api):
    from huggingface_hub import HfApi

    from tests.space.conftest import MALLORY
    from toolkit.space.app import build_demo
    from toolkit.space.settings import SpaceSettings
    pixel = "![p](http://evil.example/pixel.png)"
    evil = {"base_model": "mallory/evil-base", "datasets": [DATASET],
            "qup": {"variant": "evil", "eval": [{"dataset": "alice/secret-bench", "split": "test", "accuracy": 1.0}]}}
    repos = ["mallory/evil-lora"] + [f"mallory/own-{i}" for i in range(3)]
    _adapter_card(experiment, MALLORY, repos[0], evil)                    # joins alice's experiment
    for i, repo in enumerate(repos[1:]):                                  # a bigger experiment of hers
        _adapter_card(experiment, MALLORY, repo, {"base_model": f"mallory/x{pixel}", "datasets": ["mallory/exp"],
                                                  "qup": {"variant": f"v{i}", "dataset_repo": f"alice/{pixel}"}})
    alice = HfApi(endpoint=experiment.url, token=ALICE)
    alice.create_repo("alice/secret-bench", repo_type="dataset", private=True)
    try:
        # the owner: the token's user, the namespace of the Space's own repo, or QUP_SPACE_AUTHOR
        for owner in ({"token": ALICE}, {"space_id": "alice/arena"}, {"author": "alice"}):
            settings = SpaceSettings(endpoint=experiment.url, **owner)
            page = _page(build_demo(settings, backend=FAKE))
            assert DATASET in page and "qup/tiny-random-llama" in page, settings
            assert "mallory" not in page and "evil" not in page and "secret-bench" not in page
        from toolkit.space.app import NO_OWNER, _benchmark
        assert NO_OWNER.split(":")[0] in _page(build_demo(SpaceSettings(endpoint=experiment.url), backend=FAKE))
        [exp] = discover(space_api, "alice")
        assert exp.variants == sorted(VARIANTS)
        # a benchmark the owner's cards (or settings) name: private or foreign ones are never opened
        alice_api = HfApi(endpoint=experiment.url, token=ALICE)
        exp.adapters[0].evals = [{"dataset": "alice/secret-bench", "split": "test", "accuracy": 0.5}]
        for problems in ("", "alice/secret-bench"):
            source, _, why = _benchmark(exp, SpaceSettings(problems=problems), alice_api, "alice")
            assert source == "" and "private" in why
        exp.adapters[0].evals = [{"dataset": "mallory/bench", "split": "test", "accuracy": 0.5}]
        source, _, why = _benchmark(exp, SpaceSettings(), alice_api, "alice")
        assert source == "" and "outside this Space's namespace" in why
        exp.adapters[0].evals = [{"dataset": "mawps", "split": "test", "accuracy": 0.5}]
        assert _benchmark(exp, SpaceSettings(), alice_api, "alice") == ("mawps", "test", "")
    finally:   # the session's Hub is shared with the other Space tests
        for repo in repos:
            HfApi(endpoint=experiment.url, token=MALLORY).delete_repo(repo)
        alice.delete_repo("alice/secret-bench", repo_type="dataset")


def test_a_hostile_card_of_the_experiment_is_logged_and_skipped(experiment, space_api, caplog):
    from huggingface_hub import HfApi

    from toolkit.space.app import build_demo
    from toolkit.space.settings import SpaceSettings
    base = {"base_model": "qup/tiny-random-llama", "datasets": [DATASET]}
    cards = {"alice/counts-lora": ({**base, "qup": {"variant": "counts", "eval": [
                 {"dataset": "mawps", "split": "test", "accuracy": 0.5, "correct": "lots", "total": 2.5}]}}, True),
             "alice/no-files-lora": ({**base, "qup": {"variant": "nofiles"}}, False),
             "alice/etc-lora": ({**base, "base_model": "/etc", "qup": {"variant": "etc"}}, True),
             "alice/dotted-lora": ({**base, "qup": {"variant": "v.1"}}, True),
             "alice/odd-types-lora": ({**base, "qup": {"variant": "odd", "dataset_config": ["x"]}}, True)}
    for repo, (meta, files) in cards.items():
        _adapter_card(experiment, ALICE, repo, meta, files)
    try:
        settings = SpaceSettings(endpoint=experiment.url, token=ALICE, experiment=DATASET)
        page = _page(build_demo(settings, backend=FAKE))
        assert "counts (LoRA)" in page and "/etc" not in page and "v.1" not in page
        [exp] = discover(space_api, "alice")
        assert exp.variants == sorted([*VARIANTS, "counts"])
        assert exp.adapter("counts").evals == [{"dataset": "mawps", "split": "test", "accuracy": 0.5}]
        assert [r.variant for r in from_cards(exp)] == ["base", "counts", "oracle_refine", "rft"]
        skipped = " ".join(r.getMessage() for r in caplog.records if "skipping the card" in r.getMessage())
        for repo, words in (("no-files", "no adapter files"), ("etc", "base_model '/etc'"),
                            ("dotted", "variant 'v.1'"), ("odd-types", "dataset_config / dataset_revision must be strings")):
            assert f"alice/{repo}-lora: {words}" in skipped, skipped
    finally:
        for repo in cards:
            HfApi(endpoint=experiment.url, token=ALICE).delete_repo(repo)


def test_the_study_report_is_read_at_the_newest_tag_without_its_images_and_cut_when_long(experiment, space_api,
                                                                                           monkeypatch):
    from huggingface_hub import HfApi

    from toolkit.space import results
    api, repo = HfApi(endpoint=experiment.url, token=ALICE), "alice/report-probe-results"
    api.create_repo(repo, repo_type="dataset")
    try:
        none = published(space_api, repo)
        assert (none.results, none.details, none.report, none.error) == ([], [], "", "")   # none published
        api.upload_file(path_or_fileobj=b"# Study\n![paradox](paradox.png)\n## Findings\n- Verdict: x\n",
                        path_in_repo="report.md", repo_id=repo, repo_type="dataset")
        api.create_tag(repo, tag="v1", repo_type="dataset")
        api.upload_file(path_or_fileobj=b"# Study\n## Findings\n- Verdict: not yet tagged\n",
                        path_in_repo="report.md", repo_id=repo, repo_type="dataset")
        got = published(space_api, repo)                 # the newest tag, not main's head
        assert (got.revision, got.report) == ("v1", "# Study\n## Findings\n- Verdict: x")
        monkeypatch.setattr(results, "MAX_REPORT", 20)
        assert published(space_api, repo).report == "# Study\n\n*(report cut: longer than this page shows)*"
    finally:
        api.delete_repo(repo, repo_type="dataset")
    gone = published(space_api, repo)                    # unreadable: said, not raised
    assert gone.results == [] and gone.report == "" and gone.error
