"""Agreement with lm-evaluation-harness: its GSM8K task over HTTP against `qup serve` and our
evaluate with the same protocol see the same prompts and texts (tiny model); disagreements are
classified by where the two runs part."""
import pytest

from toolkit.agreement import classify, compare, same_answer, task_yaml


def _doc(i, prompt="P", text="... #### 5", strict=("5", True), flexible=("5", True)):
    return {"doc_id": i, "question": f"q{i}", "prompt": prompt, "completion": text,
            "strict-match": {"answer": strict[0], "correct": strict[1]},
            "flexible-extract": {"answer": flexible[0], "correct": flexible[1]}}


def _ours(i, prompt="P", text="... #### 5", answer="5", correct=True):
    return {"problem_id": f"gsm8k/test/{i}", "question": f"q{i}", "prompt": prompt, "completion": text,
            "answer": answer, "correct": correct}


def test_disagreements_are_classified_by_where_the_runs_part():
    ours = [_ours(0), _ours(1, prompt="Q"), _ours(2, text="other text", answer="4", correct=False),
            _ours(3, text="The answer is 5", answer="5"), _ours(4)]
    peer = [_doc(0), _doc(1, strict=("[invalid]", False), flexible=("[invalid]", False)),
            _doc(2), _doc(3, text="The answer is 5", strict=("[invalid]", False)), _doc(4)]
    s = compare(ours, peer, encode=str.split)
    assert [(d["doc_id"], d["class"], d["filters"]) for d in s["disagreements"]] == [
        (1, "prompt", ["strict-match", "flexible-extract"]),
        (2, "sampling", ["strict-match", "flexible-extract"]),
        (3, "extraction", ["strict-match"])]
    assert s["correctness_agreement"] == {"strict-match": 2 / 5, "flexible-extract": 3 / 5}
    assert s["classes"]["strict-match"] == {"prompt": 1, "sampling": 1, "extraction": 1}
    assert classify(ours[0], peer[0], ours_tokens=10, server_tokens=11) == "tokenisation"
    assert same_answer("$1,000", "1000") and not same_answer("12", "[invalid]")


def test_different_problems_are_refused():
    from toolkit.agreement import AgreementError
    with pytest.raises(AgreementError, match="same problems in the same order"):
        compare([_ours(0)], [_doc(1)], encode=str.split)


def test_the_peer_task_is_lm_evals_gsm8k_on_the_shared_files(shared_data):
    pytest.importorskip("lm_eval")
    t = task_yaml(shared_data / "gsm8k")
    assert (t["num_fewshot"], t["doc_to_text"], t["fewshot_config"]) == (5, "Question: {{question}}\nAnswer:",
                                                                        {"sampler": "first_n"})
    assert t["generation_kwargs"]["until"] == ["Question:", "</s>", "<|im_end|>"]


@pytest.mark.slow
def test_lm_eval_through_qup_serve_sees_our_prompts_and_texts(tiny_model, shared_data, free_port, tmp_path):
    pytest.importorskip("lm_eval")
    from toolkit.agreement import run_agreement
    s = run_agreement(tiny_model, limit=3, out=tmp_path, port=free_port, max_new_tokens=12, batch_size=2,
                      data_dir=str(shared_data / "gsm8k"))
    assert (s["problems"], s["same_prompt"], s["same_text"]) == (3, 3, 3)
    assert len(list((tmp_path / "parts").glob("*.json"))) == 2          # slices [0, 2) and [2, 3)
    assert s["correctness_agreement"] == {"strict-match": 1.0, "flexible-extract": 1.0}
    assert s["protocol"]["shots"] == 5 and s["protocol"]["chat_template"] is False
    first_shot = (shared_data / "gsm8k" / "train.jsonl").read_text().splitlines()[0]
    import json
    assert (tmp_path / "lm_eval_samples.jsonl").read_text().count(json.loads(first_shot)["question"]) == 3
