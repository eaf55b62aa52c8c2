"""The local engine on the tiny random model: seeds, padding, stop strings, adapters, scores."""
import pytest
import torch

from toolkit.generation import make_generator
from toolkit.generation.base import Request, SamplingParams, ScoreError
from toolkit.generation.engine import LocalEngine


@pytest.fixture(scope="module")
def engine(tiny_model):
    # fp32 whatever "auto" picks here: exact comparisons below need the reference's numerics
    return LocalEngine(tiny_model, batch_size=4, dtype="float32")


@pytest.fixture(scope="module")
def lora(tiny_model, tmp_path_factory):
    """A LoRA adapter with non-zero B weights, so it changes outputs."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    peft = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                           init_lora_weights=False))
    path = tmp_path_factory.mktemp("lora") / "a"
    peft.save_pretrained(path)
    return str(path)


def _prompt(engine, q="What is 2+3?"):
    return engine.render_chat([{"role": "user", "content": q}])


def test_same_seed_same_text_whatever_the_batch(engine):
    # Equal-length prompts: left padding changes float rounding, which on the random tiny model's
    # flat distributions can flip a draw (padding itself is covered by the greedy test below).
    reqs = [Request(_prompt(engine, f"Question {chr(65 + i)}?"), SamplingParams(max_new_tokens=12, seed=i))
            for i in range(6)]
    assert len({len(engine.encode(r.prompt)) for r in reqs}) == 1
    together = engine.generate(reqs, progress=False)
    alone = engine.generate([reqs[4]], progress=False)[0]
    assert alone.text == together[4].text
    assert len({c.text for c in together}) > 1  # different seeds differ
    other = engine.generate([Request(reqs[4].prompt, SamplingParams(max_new_tokens=12, seed=99))],
                            progress=False)[0]
    assert other.text != alone.text


def test_greedy_matches_hf_generate_with_left_padding(engine):
    short, long = _prompt(engine), _prompt(engine, "a much longer question " * 5)
    params = SamplingParams(max_new_tokens=10, do_sample=False)
    batch = engine.generate([Request(short, params), Request(long, params)], progress=False)
    for prompt, got in zip((short, long), batch):
        ids = torch.tensor([engine.encode(prompt)], device=engine.model.device)
        ref = engine.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10,
                                    do_sample=False)
        assert got.text == engine.tokenizer.decode(ref[0, ids.shape[1]:], skip_special_tokens=True)
        assert got.prompt_tokens == ids.shape[1]
        assert got.completion_tokens == len(got.token_ids) == len(got.token_logprobs)


def test_stop_string_and_length(engine):
    params = SamplingParams(max_new_tokens=8, do_sample=False)
    full = engine.generate([Request(_prompt(engine), params)], progress=False)[0]
    assert full.finish_reason == "length" and full.completion_tokens == 8
    stop = full.text[3:6]
    cut = engine.generate([Request(_prompt(engine), SamplingParams(max_new_tokens=8, do_sample=False,
                                                                   stop=[stop]))], progress=False)[0]
    assert cut.finish_reason == "stop"
    assert cut.text.endswith(stop) and full.text.startswith(cut.text)


def test_eos_finishes(engine):
    # Force EOS: point the end-of-turn token's output row at the prompt's last hidden state, so its
    # logit is 100 there (a raw prompt without that token: the row is tied to its embedding).
    eos, prompt = engine.tokenizer.eos_token_id, "What is 2+3? The answer is"
    head = engine.model.get_output_embeddings().weight
    saved = head[eos].clone()
    with torch.no_grad():
        ids = torch.tensor([engine.encode(prompt)], device=head.device)
        h = engine.model.get_decoder()(input_ids=ids).last_hidden_state[0, -1].to(head.dtype)
        head[eos] = 100 * h / h.dot(h)
    try:
        c = engine.generate([Request(prompt, SamplingParams(max_new_tokens=8, do_sample=False))],
                            progress=False)[0]
    finally:
        with torch.no_grad():
            head[eos] = saved
    assert c.finish_reason == "eos_token" and c.text == "" and c.completion_tokens == 0


PAIRS = [("What is 2+3?", "The answer is 5."), ("a much longer question " * 6, "Four, I think"),
         ("Hi", " 12 + 7 = 19"), ("What is 9-4?", "")]


def _pairs(engine):
    return [_prompt(engine, q) for q, _ in PAIRS], [c for _, c in PAIRS]


def test_score_is_the_completion_tokens_log_softmax(engine):
    prompts, completions = _pairs(engine)
    scores = engine.score(prompts, completions)
    for p, c, got in zip(prompts, completions, scores):
        ids, n = torch.tensor([engine.encode(p + c)], device=engine.device), len(engine.encode(p))
        with torch.no_grad():
            logits = engine.model(ids).logits[0, :-1]
        ref = torch.log_softmax(logits, -1).gather(1, ids[0, 1:, None])[:, 0][n - 1:]
        assert len(got) == ids.shape[1] - n == len(engine.encode(p + c)) - n
        assert torch.allclose(torch.tensor(got), ref.float().cpu(), atol=1e-4)
    assert scores[-1] == [] and all(lp < 0 for lp in scores[0])


def test_score_batched_equals_one_at_a_time(engine):
    prompts, completions = _pairs(engine)
    together = engine.score(prompts, completions, progress=True)
    alone = [engine.score([p], [c])[0] for p, c in zip(prompts, completions)]
    assert [len(r) for r in together] == [len(r) for r in alone]
    assert all(abs(a - b) < 1e-4 for r, x in zip(together, alone) for a, b in zip(r, x))


def test_score_with_adapter_differs_from_base(engine, tiny_model, lora):
    prompts, completions = _pairs(engine)
    eng = LocalEngine(tiny_model, adapters={"a": lora}, batch_size=4, dtype="float32")
    base, tuned = eng.score(prompts, completions), eng.score(prompts, completions, adapter="a")
    flat = lambda rows: [x for r in rows for x in r]  # noqa: E731
    assert flat(base) == pytest.approx(flat(engine.score(prompts, completions)), abs=1e-5)
    assert flat(tuned) != pytest.approx(flat(base), abs=1e-3)
    with pytest.raises(ValueError, match="unknown adapter 'b'"):
        eng.score(prompts, completions, adapter="b")


def test_score_rejects_a_token_across_the_boundary(engine):
    with pytest.raises(ScoreError, match="row 1's completion merges"):
        engine.score(["Hello there", "Hello wor"], [" friend", "ld"])
    with pytest.raises(ScoreError, match="one completion per prompt"):
        engine.score(["a", "b"], ["c"])


def test_bf16_engine_generates_and_reports_its_dtype(tiny_model):
    gen = make_generator(tiny_model, dtype="bf16", batch_size=2)
    assert gen.dtype == "bfloat16" and gen.model.dtype == torch.bfloat16
    prompt = _prompt(gen)
    out = gen.generate([Request(prompt, SamplingParams(max_new_tokens=6, seed=s)) for s in (1, 2)],
                       progress=False)
    assert all(c.completion_tokens >= 1 and c.finish_reason in ("length", "eos_token") for c in out)
    assert all(lp < 0 for lp in gen.score([prompt], [out[0].text])[0])


def test_adapter_changes_outputs(tiny_model, lora):
    eng = LocalEngine(tiny_model, adapters={"a": lora}, batch_size=4, dtype="float32")
    prompt = _prompt(eng)
    params = SamplingParams(max_new_tokens=10, do_sample=False)
    with_adapter, without = eng.generate([Request(prompt, params, adapter="a"),
                                          Request(prompt, params)], progress=False)
    plain = LocalEngine(tiny_model, dtype="float32").generate([Request(prompt, params)],
                                                              progress=False)[0]
    assert without.text == plain.text          # no adapter_id: the base model
    assert with_adapter.text != without.text   # the adapter is really applied
    with pytest.raises(ValueError, match="unknown adapter 'b'"):
        eng.generate([Request(prompt, params, adapter="b")], progress=False)


def test_a_single_default_adapter_is_merged_and_decodes_the_same(tiny_model, lora):
    apart = LocalEngine(tiny_model, adapters={"a": lora}, batch_size=4, dtype="float32")
    merged = LocalEngine(tiny_model, adapters={"a": lora}, default_adapter="a", batch_size=4, dtype="float32")
    assert merged.merged and not apart.merged
    assert not any("lora" in name for name, _ in merged.model.named_parameters())   # plain weights
    prompt = _prompt(apart)
    params = SamplingParams(max_new_tokens=10, do_sample=False)
    [a] = apart.generate([Request(prompt, params, adapter="a")], progress=False)
    [m] = merged.generate([Request(prompt, params)], progress=False)
    assert m.text == a.text and m.token_ids == a.token_ids
    assert merged.score([prompt], [a.text])[0] == pytest.approx(apart.score([prompt], [a.text], "a")[0],
                                                                abs=1e-4)


def test_sampling_params_are_validated():
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingParams(max_new_tokens=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=1.5)


def test_tiny_top_p_and_top_k_1_reduce_to_greedy(engine):
    prompt = _prompt(engine)
    greedy = engine.generate([Request(prompt, SamplingParams(max_new_tokens=10, do_sample=False))],
                             progress=False)[0]
    for params in (SamplingParams(max_new_tokens=10, temperature=1.0, top_p=1e-6, seed=3),
                   SamplingParams(max_new_tokens=10, temperature=1.0, top_k=1, seed=4)):
        assert engine.generate([Request(prompt, params)], progress=False)[0].text == greedy.text


def test_decoding_uses_the_current_cache_argument(engine):
    """The model is called with ``cache=`` (transformers deprecated ``past_key_values=``, and
    warned on every generate)."""
    import warnings
    prompt = engine.render_chat([{"role": "user", "content": "Hi"}])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        [c] = engine.generate([Request(prompt, SamplingParams(max_new_tokens=4, seed=0))], progress=False)
    assert c.completion_tokens >= 1


def test_a_row_failing_alone_leaves_the_batch(engine):
    """With ``on_error`` a row whose sampling raises fails alone; the others finish as usual."""
    prompt = _prompt(engine)
    bad = SamplingParams(max_new_tokens=4, temperature=float("nan"), seed=1)
    reqs = [Request(prompt, SamplingParams(max_new_tokens=6, seed=0)), Request(prompt, bad),
            Request(prompt, SamplingParams(max_new_tokens=6, seed=2))]
    errors = []
    out = engine.generate_batch(reqs, on_error=lambda i, e: errors.append(i))
    assert errors == [1] and out[1].finish_reason == "error"
    want = engine.generate([reqs[0], reqs[2]], progress=False)
    assert [c.text for c in (out[0], out[2])] == [c.text for c in want]
    with pytest.raises(RuntimeError):    # without on_error the error propagates as before
        engine.generate_batch([Request(prompt, bad)])


def test_rows_join_and_leave_a_running_batch(engine):
    """Continuous batching: a row that joins mid-way (its KV cache left-padded into the running
    one) decodes as it would alone; a cancelled row leaves at the next step."""
    a = Request(_prompt(engine), SamplingParams(max_new_tokens=12, do_sample=False))
    b = Request(_prompt(engine, "Hi"), SamplingParams(max_new_tokens=6, seed=3))
    c = Request(_prompt(engine, "Hello there, how are you?"), SamplingParams(max_new_tokens=30, seed=4))
    want = [engine.generate([r], progress=False)[0].text for r in (a, b)]
    out, stop = {}, set()
    with torch.inference_mode():
        batch = engine.start_batch(None, on_finish=lambda i, x: out.__setitem__(i, x),
                                   cancelled=lambda i: i in stop)
        assert batch.add([a]) == [0]
        for _ in range(3):
            batch.step()
        assert batch.add([b, c]) == [1, 2] and batch.active == [0, 1, 2]
        stop.add(2)
        batch.step()
        assert out[2].finish_reason == "cancelled" and batch.active == [0, 1]
        while batch.active:
            batch.step()
    assert [out[0].text, out[1].text] == want
