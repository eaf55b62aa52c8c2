"""A small published experiment on an embedded Hub, as `qup run` publishes one: a scored trace
dataset (configs rft, oracle_refine) and two LoRA adapters of the tiny random model, published by
the real publish functions (adapters with random LoRA weights instead of training: seconds, not
minutes; training is tested in tests/stages)."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from tests.conftest import ALICE

DATASET = "alice/qup-mawps-tiny-random-llama"
MALLORY = "hf_mallorywritetoken"        # a stranger with a write token for her own namespace only
VARIANTS = {"rft": {"reward": [0.6, 0.7, 0.8], "nll": [0.5, 0.6, 0.7], "eval": (3, 20)},
            "oracle_refine": {"reward": [0.9, 0.95, 0.85], "nll": [1.2, 1.1, 1.3], "eval": (1, 20)}}


@dataclass
class PublishedExperiment:
    url: str
    dataset: str
    adapters: dict[str, str]      # variant -> repo id
    adapter_dirs: dict[str, str]  # variant -> local dir
    base: str                     # the tiny model's local dir


def _traces(variant: str, scores: dict):
    from datasets import Dataset

    from toolkit.schema import TRACE, empty_row
    rows = []
    for i, (reward, nll) in enumerate(zip(scores["reward"], scores["nll"])):
        rows.append({**empty_row(TRACE), "id": f"mawps/train/{i}", "question": f"What is {i} + 2?",
                     "gold_answer": str(i + 2), "problem_id": f"mawps/train/{i}", "trace_id": f"p{i}#0",
                     "completion": f"{i} + 2 = {i + 2}. The answer is: {i + 2}", "correct": True,
                     "variant": variant, "prompt_id": "math_cot@x", "reward": reward, "reward_kind": "judge",
                     "nll": nll, "nll_tokens": 10})
    return Dataset.from_list(rows, features=TRACE)


def _adapter(tiny_model: str, out, seed: int, variant: str) -> str:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(out)
    (out / "qup_train.json").write_text(json.dumps({
        "base_model": "qup/tiny-random-llama", "dataset_repo": DATASET, "dataset_revision": "v1",
        "dataset_config": variant, "config": {}, "metrics": {}}))
    return str(out)


@pytest.fixture(scope="session")
def experiment(tmp_path_factory, tiny_model):
    """A running Hub (tokens: alice write) holding the experiment; yields a PublishedExperiment."""
    import huggingface_hub.constants

    from toolkit.hub import HubServer
    from toolkit.publishing.publish import publish_adapter, publish_dataset
    root = tmp_path_factory.mktemp("space_hub")
    with pytest.MonkeyPatch.context() as mp, \
            HubServer(root / "hub", tokens={"alice": (ALICE, "write"), "mallory": (MALLORY, "write")}) as hub:
        mp.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
        mp.setenv("HF_HUB_DISABLE_XET", "1")
        publish_dataset(DATASET, {v: _traces(v, s) for v, s in VARIANTS.items()}, token=ALICE,
                        endpoint=hub.url, provenance={"prompt_template": "math_cot"})
        adapters, dirs = {}, {}
        for seed, (variant, spec) in enumerate(VARIANTS.items()):
            dirs[variant] = _adapter(tiny_model, root / variant, seed, variant)
            repo = f"{DATASET}-{variant.replace('_', '-')}-lora"
            correct, total = spec["eval"]
            publish_adapter(repo, dirs[variant], token=ALICE, endpoint=hub.url, eval_results=[
                {"dataset": "mawps", "split": "test", "accuracy": correct / total, "correct": correct,
                 "total": total}])
            adapters[variant] = repo
        yield PublishedExperiment(hub.url, DATASET, adapters, dirs, tiny_model)


@pytest.fixture
def space_api(experiment):
    from huggingface_hub import HfApi
    return HfApi(endpoint=experiment.url)     # anonymous: a public Space reads public repos


STUDY = {"variants": ["self"], "train_problems": {"limit": 4}, "eval_problems": {"limit": 4},
         "sample": {"k": 1, "max_new_tokens": 12}, "train": {"max_steps": 1},
         "evaluate": {"max_new_tokens": 12, "temperature": 1.0, "n": 2, "k": [1, 2]},
         "study": {"seeds": [0], "lambdas": [], "baseline": "self", "bootstrap": 200}}


@pytest.fixture(scope="session")
def study_hub(tmp_path_factory, tiny_model, shared_data):
    """A real `qup study` of the smoke recipe (sampled evaluation: pass@1 and pass@2 from 2 samples)
    published to its embedded Hub; yields that Hub's URL, served read-only afterwards."""
    import huggingface_hub.constants

    from toolkit.hub import HubServer
    from toolkit.study import run_study
    run_dir = tmp_path_factory.mktemp("study_run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
        mp.setenv("HF_HUB_DISABLE_XET", "1")
        summary = run_study("smoke", STUDY, run_dir=str(run_dir))
        assert summary["results_published"]["repo"].endswith("-results")
        with HubServer(run_dir / "hub") as hub:
            yield hub.url
