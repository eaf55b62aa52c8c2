"""Agreement with a peer's harness: lm-evaluation-harness's GSM8K task against ``qup serve``,
problem by problem, beside our ``evaluate`` set to the same protocol.

lm-eval runs its ``gsm8k`` task (5-shot ``Question: …\\nAnswer:`` plain text, greedy, stop at
``Question:``, strict and flexible regex extraction) through ``local-completions`` over HTTP
against ``qup serve`` (our OpenAI routes); the shots are the first five training problems
(``first_n``) and the data is the shared GSM8K, so both sides see the same prompts. We then
evaluate the same model and problems in-process with ``prompt=question_answer, shots=5,
chat_template=false`` and the same stop strings, and compare each problem's prompt, text,
extracted answer and correctness. A disagreement is classified:

- ``prompt``: the prompts differ (few-shot rendering),
- ``tokenisation``: same prompt text, the server counts other prompt tokens than our tokenizer,
- ``sampling``: same prompt and tokens, other generated text (decoding: batch shape, numerics),
- ``extraction``: same text, other extracted answer or verdict (our markers + math-verify vs
  lm-eval's regexes and exact match).

Example:
    >>> summary = run_agreement("smollm2-135m-instruct", limit=100, out="runs/agreement")  # doctest: +SKIP
    >>> summary["correctness_agreement"]["flexible-extract"]                              # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from .answers import as_number
from .errors import QupError

STOP = ["Question:", "</s>", "<|im_end|>"]      # lm-eval gsm8k's `until`
FILTERS = ("strict-match", "flexible-extract")
TASK = "gsm8k_qup"


class AgreementError(QupError, RuntimeError):
    """The peer harness could not run (lm-eval missing, the server did not start)."""


def task_yaml(data_dir: str | Path) -> dict:
    """lm-eval's own gsm8k task, reading the shared GSM8K files, shots ``first_n``."""
    import yaml
    try:
        import lm_eval
    except ImportError:
        raise AgreementError("lm-eval is not installed: .venv/bin/pip install lm-eval") from None
    task = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks/gsm8k/gsm8k.yaml").read_text())
    data_dir = Path(data_dir)
    task.update(task=TASK, tag=[], dataset_path="json", dataset_name=None,
                dataset_kwargs={"data_files": {s: str(data_dir / f"{s}.jsonl") for s in ("train", "test")}},
                fewshot_config={"sampler": "first_n"})
    return task


class Server:
    """``qup serve`` as a subprocess (its OpenAI routes are used over HTTP only)."""

    def __init__(self, model: str, port: int, dtype: str = "float32", max_batch_size: int = 8):
        self.url = f"http://127.0.0.1:{port}"
        self.cmd = [sys.executable, "-m", "toolkit.cli", "serve", "--model", model, "--port", str(port),
                    "--dtype", dtype, "--max-batch-size", str(max_batch_size)]

    def __enter__(self) -> "Server":
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen(self.cmd, env=env, cwd=root, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AgreementError(f"qup serve exited: {self.proc.stderr.read()[-2000:]}")
            try:
                if requests.get(f"{self.url}/health", timeout=2).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(1)
        self.__exit__()
        raise AgreementError("qup serve did not answer /health in 600 s")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def prompt_tokens(self, prompt: str) -> int:
        """Prompt tokens as the server counts them (OpenAI ``usage``)."""
        r = requests.post(f"{self.url}/v1/completions", json={"model": "tgi", "prompt": prompt, "max_tokens": 1,
                                                              "temperature": 0}, timeout=300)
        r.raise_for_status()
        return int(r.json()["usage"]["prompt_tokens"])


def run_lm_eval(server: Server, tokenizer: str, data_dir: str, ids: list[int], max_gen_toks: int,
                concurrent: int = 8) -> list[dict]:
    """lm-eval's per-problem log (one dict per doc, both filters) of the GSM8K task on ``server``,
    for the test problems ``ids`` (indices)."""
    import yaml
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, f"{TASK}.yaml").write_text(yaml.safe_dump(task_yaml(data_dir)))
        out = simple_evaluate(
            model="local-completions", tasks=[TASK], task_manager=TaskManager(include_path=tmp),
            model_args={"base_url": f"{server.url}/v1/completions", "model": "tgi", "tokenizer": tokenizer,
                        "tokenizer_backend": "huggingface", "tokenized_requests": False,
                        "num_concurrent": concurrent, "max_gen_toks": max_gen_toks, "max_retries": 3,
                        "timeout": 7200},       # a busy CPU: a retry would decode the same batch again
            samples={TASK: list(ids)}, log_samples=True, random_seed=0, numpy_random_seed=0,
            torch_random_seed=0)
    docs: dict[int, dict] = {}
    for s in out["samples"][TASK]:
        d = docs.setdefault(s["doc_id"], {"doc_id": s["doc_id"], "question": s["doc"]["question"],
                                          "prompt": s["arguments"][0][0] if isinstance(s["arguments"][0], (list, tuple))
                                          else s["arguments"]["gen_args_0"]["arg_0"],
                                          "completion": _first(s["resps"])})
        d[s["filter"]] = {"answer": str(_first(s["filtered_resps"])), "correct": bool(s["exact_match"])}
    found = sorted(docs)
    if found != sorted(ids) and found == list(range(len(ids))):   # positions in the selection
        return [{**docs[i], "doc_id": ids[i]} for i in found]
    return [docs[i] for i in found]


def _first(x):
    while isinstance(x, (list, tuple)) and x:
        x = x[0]
    return x


def same_answer(a: str, b: str) -> bool:
    """Equal extracted answers (as numbers where both are numbers; lm-eval keeps ``$`` and commas).

    >>> same_answer("1,234", "1234"), same_answer("$18.", "18"), same_answer("[invalid]", ""), same_answer("7", "")
    (True, True, True, False)
    """
    a, b = ("" if s in (None, "[invalid]") else str(s) for s in (a, b))    # lm-eval's "no match"
    na, nb = (as_number(s.strip().rstrip(".")) for s in (a, b))
    return na == nb if na is not None and nb is not None else a.strip() == b.strip()


def classify(ours: dict, peer: dict, ours_tokens: int, server_tokens: int | None) -> str:
    """Why a problem's verdicts differ: ``prompt`` | ``tokenisation`` | ``sampling`` | ``extraction``."""
    if ours["prompt"] != peer["prompt"]:
        return "prompt"
    if server_tokens is not None and server_tokens != ours_tokens:
        return "tokenisation"
    if ours["completion"].strip() != _cut(peer["completion"]).strip():
        return "sampling"
    return "extraction"


def _cut(text: str) -> str:
    cuts = [text.find(s) for s in STOP if s in text]
    return text[:min(cuts)] if cuts else text


def compare(ours: list[dict], peer: list[dict], encode, server: Server | None = None) -> dict:
    """Per-problem agreement of ``ours`` (rows with prompt, completion, answer, correct) and lm-eval's
    docs (same order); every disagreement (correctness under either filter) classified."""
    if len(ours) != len(peer) or any(o["question"].strip() != p["question"].strip() for o, p in zip(ours, peer)):
        raise AgreementError("the two harnesses did not evaluate the same problems in the same order")
    n = len(ours)
    out = {"problems": n, "same_prompt": sum(o["prompt"] == p["prompt"] for o, p in zip(ours, peer)),
           "same_text": sum(o["completion"].strip() == _cut(p["completion"]).strip() for o, p in zip(ours, peer)),
           "accuracy": {"qup": sum(o["correct"] for o in ours) / n},
           "answer_agreement": {}, "correctness_agreement": {}, "disagreements": []}
    for f in FILTERS:
        out["accuracy"][f"lm-eval {f}"] = sum(p[f]["correct"] for p in peer) / n
        out["answer_agreement"][f] = sum(same_answer(o["answer"], p[f]["answer"]) for o, p in zip(ours, peer)) / n
        out["correctness_agreement"][f] = sum(o["correct"] == p[f]["correct"] for o, p in zip(ours, peer)) / n
    for i, (o, p) in enumerate(zip(ours, peer)):
        differ = [f for f in FILTERS if o["correct"] != p[f]["correct"]]
        if not differ:
            continue
        ours_tokens = len(encode(o["prompt"]))
        server_tokens = server.prompt_tokens(o["prompt"]) if server else None
        out["disagreements"].append({
            "doc_id": p["doc_id"], "problem_id": o["problem_id"], "filters": differ,
            "class": classify(o, p, ours_tokens, server_tokens), "qup_answer": o["answer"],
            "qup_correct": o["correct"], **{f"lm_eval_{f}": p[f] for f in FILTERS},
            "qup_text": o["completion"][-300:], "lm_eval_text": _cut(p["completion"])[-300:]})
    out["classes"] = {f: _count(d["class"] for d in out["disagreements"] if f in d["filters"]) for f in FILTERS}
    return out


def _count(items) -> dict:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out


def run_agreement(model: str, limit: int = 100, out: str | Path = "runs/lm-eval-agreement", port: int = 8091,
                  max_new_tokens: int = 256, batch_size: int = 8, data_dir: str | None = None) -> dict:
    """Both harnesses on the first ``limit`` GSM8K test problems, ``batch_size`` problems at a time
    (each slice kept under ``out/parts``: a killed run resumes, and ``agreement.json`` is rewritten
    after every slice with the problems done so far); return the summary."""
    from .models import resolve_model
    from .sources import SourceConfig, shared_data_dir
    data_dir = data_dir or str((shared_data_dir() or Path("../shared/data")) / "gsm8k")
    path, out = resolve_model(model), Path(out)
    (out / "parts").mkdir(parents=True, exist_ok=True)
    cfg, gen = _ours(path, problems=SourceConfig(source=data_dir, split="test", limit=limit),
                     prompt="question_answer", shots=5, chat_template=False, stop=list(STOP),
                     max_new_tokens=max_new_tokens, batch_size=batch_size)
    with Server(path, port, max_batch_size=batch_size) as server:
        for start in range(0, limit, batch_size):
            part = out / "parts" / f"{start:05d}.json"
            if not part.exists():
                done = _slice(cfg, gen, server, path, data_dir, start, min(limit, start + batch_size))
                part.write_text(json.dumps(done, default=str))
            summary = summarise(out, gen, server, data_dir, model)
    return summary


def _slice(cfg, gen, server: Server, path: str, data_dir: str, start: int, stop: int) -> dict:
    """Problems ``[start, stop)`` on both sides at once (ours in-process beside the HTTP side)."""
    import dataclasses

    from .prompts import load_prompt
    from .sources import load_problems
    from .stages.evaluate import evaluate, load_shots, render_prompt
    cfg = dataclasses.replace(cfg, problems=dataclasses.replace(cfg.problems, offset=start, limit=stop - start))
    ran, timing = {}, {}

    def ours_side():
        t = time.monotonic()
        ran["ours"] = evaluate(load_problems(cfg.problems), cfg, gen)
        timing["qup_s"] = time.monotonic() - t
    side = threading.Thread(target=ours_side, daemon=True)
    side.start()
    t = time.monotonic()
    peer = run_lm_eval(server, path, data_dir, list(range(start, stop)), cfg.max_new_tokens,
                       concurrent=stop - start)
    timing["lm_eval_s"] = time.monotonic() - t
    side.join()
    if "ours" not in ran:
        raise AgreementError("our evaluation failed (see the log above)")
    rows, metrics = ran["ours"]
    shots, template = load_shots(cfg), load_prompt(cfg.prompt)
    ours = [{**r, "prompt": render_prompt(template, r["question"], shots, False, gen)} for r in rows]
    return {"ours": ours, "peer": peer, "protocol": metrics["protocol"], "timing": timing}


def summarise(out: Path, gen, server: Server | None, data_dir: str, model: str) -> dict:
    """Compare every finished slice under ``out/parts``; write ``agreement.json`` and the logs."""
    parts = [json.loads(p.read_text()) for p in sorted((out / "parts").glob("*.json"))]
    ours = [o for p in parts for o in p["ours"]]
    peer = [d for p in parts for d in p["peer"]]
    summary = compare(ours, peer, gen.encode, server)
    summary.update(model=model, protocol=parts[0]["protocol"], lm_eval_version=_version("lm_eval"),
                   timing={k: sum(p["timing"][k] for p in parts) for k in ("lm_eval_s", "qup_s")},
                   peer_task=task_yaml(data_dir))
    (out / "agreement.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "lm_eval_samples.jsonl").write_text("".join(json.dumps(p) + "\n" for p in peer))
    (out / "qup_rows.jsonl").write_text("".join(json.dumps(o) + "\n" for o in ours))
    return summary


def _ours(path: str, **protocol):
    """Our evaluation config and generator: the model in float32 on transformers, as served."""
    import dataclasses

    from .stages.evaluate import EvaluateConfig
    if "dtype" in {f.name for f in dataclasses.fields(EvaluateConfig)}:   # the model's flat keys
        from .generation import make_generator
        cfg = EvaluateConfig(model=path, dtype="float32", backend="transformers", **protocol)
        return cfg, make_generator(path, backend="transformers", batch_size=cfg.batch_size, dtype="float32")
    from .generation.roles import RoleConfig                                # the model as one role
    cfg = EvaluateConfig(model=RoleConfig(path, backend="transformers", dtype="float32"), **protocol)
    return cfg, cfg.model.generator(None)


def _version(name: str) -> str:
    from importlib.metadata import version
    return version(name.replace("_", "-"))
