"""Adaptation cost: the learner's NLL of exactly the tokens SFT's loss sees, locally and via TGI."""
import math

import pytest
import torch
from datasets import Dataset

from toolkit.diagnostics.adaptation_cost import AdaptationCostError, nll, sft_texts
from toolkit.generation.engine import LocalEngine
from toolkit.prompts import load_prompt
from toolkit.serve import TGIServer

PROMPT = load_prompt("math_cot").id


def traces(n=5):
    return Dataset.from_dict({
        "trace_id": [f"p{i}#0" for i in range(n)], "problem_id": [f"p{i}" for i in range(n)],
        "question": [f"Tom has {i + 2} apples and eats one. How many are left?" for i in range(n)],
        "completion": [f"Tom has {i + 2} apples. {i + 2} - 1 = {i + 1}.\nThe answer is: {i + 1}" * (1 + i % 3)
                       for i in range(n)],
        "prompt_id": [PROMPT] * n})


@pytest.fixture(scope="module")
def engine(tiny_model):
    return LocalEngine(tiny_model, batch_size=4, dtype="float32")


def test_nll_equals_a_direct_transformers_computation(engine):
    ds = traces()
    prompts, completions = sft_texts(ds, engine.tokenizer)
    assert all(c.endswith("<|im_end|>\n") for c in completions)   # the closing turn is a loss token
    got = nll(engine, prompts, completions, progress=False)
    tok, model = engine.tokenizer, engine.model
    for row, (value, n) in zip(ds, got):
        msgs = [{"role": "user", "content": load_prompt("math_cot").messages(row["question"])[0]["content"]}]
        head = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=False)
        full = tok.apply_chat_template(msgs + [{"role": "assistant", "content": row["completion"]}],
                                       tokenize=True, return_dict=False)
        ids = torch.tensor([full])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1].float()
        lp = torch.log_softmax(logits, -1).gather(1, ids[0, 1:, None])[:, 0]
        expect = -lp[len(head) - 1:].mean().item()
        assert n == len(full) - len(head)
        assert value == pytest.approx(expect, abs=1e-4)


def test_nll_is_the_loss_trl_trains_on(engine, tmp_path):
    """One example through TRL's own SFT collator: at LoRA init (B = 0) its loss is our NLL."""
    from toolkit.stages.train import TrainConfig, build_trainer
    ds = traces(1)
    [(value, _)] = nll(engine, *sft_texts(ds, engine.tokenizer), progress=False)
    trainer = build_trainer(ds, TrainConfig(model="tiny-random", data="x", out=str(tmp_path), max_steps=1,
                                            batch_size=1, dtype="float32"))
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.model(**{k: v for k, v in batch.items() if k != "completion_mask"}).loss
    assert loss.item() == pytest.approx(value, abs=1e-4)


def test_batched_equals_one_sequence_per_forward(engine, tiny_model):
    ds = traces(6)
    texts = sft_texts(ds, engine.tokenizer)
    one = LocalEngine(tiny_model, batch_size=1, dtype="float32")
    for (a, n), (b, m) in zip(nll(engine, *texts, progress=False), nll(one, *texts, progress=False)):
        assert n == m and a == pytest.approx(b, abs=1e-4) and math.isfinite(a)


def test_nll_through_a_tgi_endpoint_equals_local(engine, tiny_model):
    from toolkit.generation import make_generator
    texts = sft_texts(traces(3), engine.tokenizer)
    with TGIServer(tiny_model, dtype="float32") as server:
        remote = make_generator(tiny_model, backend="endpoint", endpoints=[server.url])
        got = nll(remote, *texts, progress=False)
    for (a, n), (b, m) in zip(got, nll(engine, *texts, progress=False)):
        assert n == m and a == pytest.approx(b, abs=1e-3)


def test_unknown_prompt_template_names_row_and_field(engine):
    ds = traces(2).map(lambda r, i: {"prompt_id": "nope@1234" if i == 1 else r["prompt_id"]}, with_indices=True)
    with pytest.raises(AdaptationCostError, match=r"row p1#0: prompt_id 'nope@1234'.*unknown prompt template"):
        sft_texts(ds, engine.tokenizer)
