"""Hub round trip of a 100k-row TRACE variant vs the same parquet written and read locally.

Publishes ``{"rft": ds}`` to the embedded Hub (in this process, a background thread) with
``publish_dataset`` and loads it back with ``load_dataset(repo, "rft", revision=tag)``; then
``ds.to_parquet`` + ``load_dataset("parquet", data_files=...)`` locally. Both loads use a fresh
cache dir, so both pay parquet -> arrow conversion. Target: hub (publish + load) <= 2x local
(write + read). MB/s is parquet megabytes (10^6 bytes) per second. A 50-row round trip on both
sides first (untimed) takes one-time imports out; then ``--repeats`` runs, each publishing new
bytes (one cell differs) to a new repo, sides in alternating order, and the medians are
compared (the machine is shared).

Run: ``.venv/bin/python benchmarks/hub_roundtrip.py [--rows 100000 --k 16]``
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from toolkit.hub import HubServer  # no huggingface_hub import: HF_ENDPOINT can still be set

GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k" / "train.jsonl"
TOKEN = "hf_benchwritetoken"
REPO = "bench/qup-hub-roundtrip"
SYSTEM = "You are a helpful assistant that solves math word problems step by step."
OPENERS = ["Let's think step by step.", "First, read the problem carefully.",
           "We solve this one quantity at a time.", "Let me work through it.", ""]


def problems() -> list[tuple[str, str]]:
    """(question, worked solution) pairs: GSM8K train when present, else generated."""
    if GSM8K.is_file():
        with GSM8K.open() as fh:
            return [(r["question"], r["answer"]) for r in map(json.loads, fh)]
    print(f"note: {GSM8K} absent, using generated problems", file=sys.stderr)
    rng = random.Random(0)
    out = []
    for i in range(2000):
        a, b, c = rng.randint(2, 90), rng.randint(2, 90), rng.randint(2, 9)
        out.append((f"A farmer has {a} crates with {b} apples each and sells {c} crates. "
                    f"How many apples are left after the sale, if none are eaten on the way?",
                    f"The farmer starts with {a}*{b} = <<{a}*{b}={a * b}>>{a * b} apples.\n"
                    f"He sells {c}*{b} = <<{c}*{b}={c * b}>>{c * b} apples.\n"
                    f"{a * b}-{c * b} = <<{a * b}-{c * b}={a * b - c * b}>>{a * b - c * b} are left.\n"
                    f"#### {a * b - c * b}"))
    return out


def build_rows(n_rows: int, k: int) -> dict[str, list]:
    """``n_rows`` TRACE rows (k samples per problem), columnar; deterministic."""
    from toolkit.prompts import load_prompt
    from toolkit.schema import empty_trace
    tmpl = load_prompt("math_cot")
    probs = problems()
    rng = random.Random(1234)
    params = json.dumps({"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 512})
    rows = []
    for n in range(n_rows):
        p, j = divmod(n, k)
        question, solution = probs[p % len(probs)]
        steps, gold = solution.rsplit("\n#### ", 1) if "\n#### " in solution else (solution, "")
        steps = steps.split("\n")
        if rng.random() < 0.4:  # a wrong sample: shuffled steps, another problem's step, bad answer
            steps = rng.sample(steps, len(steps)) + [rng.choice(probs)[1].split("\n")[0]]
            answer = str(rng.randint(0, 999))
        else:
            answer = gold
        completion = " ".join(filter(None, [rng.choice(OPENERS), "\n".join(steps),
                                            f"The answer is \\boxed{{{answer}}}."]))
        user = tmpl.messages(question)[0]["content"]
        pid = f"gsm8k/train/{p}"
        row = empty_trace()
        row.update(
            id=pid, question=question, gold_answer=gold, gold_solution=solution, source="gsm8k",
            split="train", problem_id=pid, trace_id=f"{pid}#{j}", sample_index=j,
            seed=1000 * p + j, model_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            model_revision="12fd25f77366fa6b3b4b768ec3050bf629380bac", prompt_id=tmpl.id,
            params=params,
            prompt=f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
                   "<|im_start|>assistant\n",
            completion=completion, prompt_tokens=len(user) // 4,
            completion_tokens=len(completion) // 4,
            finish_reason="length" if rng.random() < 0.05 else "eos_token",
            answer=answer, correct=answer == gold,
            verify_status="correct" if answer == gold else "wrong", variant="rft")
        rows.append(row)
    return {name: [r[name] for r in rows] for name in rows[0]}


def fingerprint(ds) -> tuple[int, str]:
    """(rows, sha256 of trace_id + completion) of a Dataset, order-sensitive."""
    t = ds.with_format("arrow")[:]
    h = hashlib.sha256()
    for col in ("trace_id", "completion"):
        for v in t[col].to_pylist():
            h.update(v.encode() + b"\0")
    return t.num_rows, h.hexdigest()[:16]


def timed(fn):
    gc.collect()  # garbage of the previous step is not charged to this one
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def round_trips(ds, tmp: Path, url: str, tag: str, hub_first: bool = False) -> dict:
    """One local write+read and one hub publish+load of ``ds`` (new repo, fresh caches)."""
    from datasets import load_dataset

    from toolkit.publishing.publish import publish_dataset
    local = tmp / f"local-{tag}" / "train-00000-of-00001.parquet"
    local.parent.mkdir()
    repo = f"{REPO}-{tag}"
    out = {"bytes": 0}

    def local_side():
        _, out["write"] = timed(lambda: ds.to_parquet(str(local)))
        out["local_ds"], out["read"] = timed(lambda: load_dataset(
            "parquet", data_files=str(local), split="train", cache_dir=str(tmp / f"cache-local-{tag}")))
        out["bytes"] = local.stat().st_size

    def hub_side():
        res, out["publish"] = timed(lambda: publish_dataset(repo, {"rft": ds}, token=TOKEN,
                                                            endpoint=url))
        out["hub_ds"], out["load"] = timed(lambda: load_dataset(
            repo, "rft", revision=res.tag, split="train", cache_dir=str(tmp / f"cache-hub-{tag}")))
    for side in ((hub_side, local_side) if hub_first else (local_side, hub_side)):
        side()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=16, help="samples per problem")
    ap.add_argument("--repeats", type=int, default=5, help="round trips per side; medians shown")
    ap.add_argument("--target", type=float, default=2.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="qup-hub-bench-"))
    try:
        ok = bench(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # ~2 GB of arrow caches at the defaults
    if not ok:
        sys.exit(1)


def bench(args, tmp: Path) -> bool:
    """Warm-up, ``args.repeats`` round trips on both sides, print the figures; True when verified."""
    # Fresh hub cache and datasets caches; huggingface_hub reads these (and HF_ENDPOINT) at import.
    os.environ.update(HF_HOME=str(tmp / "hf_home"), HF_HUB_DISABLE_XET="1", HF_TOKEN=TOKEN,
                      HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                      HF_DATASETS_DISABLE_PROGRESS_BARS="1")
    assert "huggingface_hub" not in sys.modules and "datasets" not in sys.modules
    with HubServer(tmp / "hub", tokens={"bench": (TOKEN, "write")}) as server:
        os.environ["HF_ENDPOINT"] = server.url
        import datasets
        from datasets import Dataset

        from toolkit.schema import TRACE
        datasets.disable_progress_bars()
        cols, t_build = timed(lambda: build_rows(args.rows, args.k))
        # Warm-up (untimed): one-time imports and template compiles of both paths.
        round_trips(Dataset.from_dict({c: v[:50] for c, v in cols.items()}, features=TRACE),
                    tmp, server.url, "warmup")
        runs = []
        for i in range(args.repeats):
            cols["params"][0] = json.dumps({"repeat": i})  # new bytes: a full LFS upload each time
            ds = Dataset.from_dict(cols, features=TRACE)
            want = fingerprint(ds)
            r = round_trips(ds, tmp, server.url, str(i), hub_first=i % 2 == 1)  # alternate
            r["ok"] = want == fingerprint(r.pop("local_ds")) == fingerprint(r.pop("hub_ds"))
            r["fingerprint"] = want
            runs.append(r)
            print(f"run {i}: publish {r['publish']:.2f} s, hub load {r['load']:.2f} s, "
                  f"local write {r['write']:.2f} s, local read {r['read']:.2f} s, "
                  f"ratio {(r['publish'] + r['load']) / (r['write'] + r['read']):.2f}x, "
                  f"rows+hash {'OK' if r['ok'] else 'MISMATCH'}")
        blobs = [p for p in (tmp / "hub" / "lfs").iterdir() if p.is_file()]

    med = {k: statistics.median(r[k] for r in runs) for k in ("publish", "load", "write", "read")}
    mb = runs[-1]["bytes"] / 1e6
    ok = all(r["ok"] for r in runs)
    ratio = (med["publish"] + med["load"]) / (med["write"] + med["read"])

    def line(name, secs):
        print(f"{name:<22}{secs:8.2f} s   {mb / secs:8.1f} MB/s")
    print(f"rows                  {args.rows}  (k={args.k}, built in {t_build:.1f} s; "
          f"median of {args.repeats} runs below)")
    print(f"parquet MB            {mb:.1f}  ({len(blobs)} LFS objects on the hub, "
          f"{max(p.stat().st_size for p in blobs) / 1e6:.1f} MB the largest)")
    line("hub publish", med["publish"])
    line("hub load", med["load"])
    line("local write", med["write"])
    line("local read", med["read"])
    print(f"hub round trip        {med['publish'] + med['load']:8.2f} s")
    print(f"local round trip      {med['write'] + med['read']:8.2f} s")
    print(f"ratio hub/local       {ratio:8.2f}x   (target <= {args.target:g}x: "
          f"{'MET' if ratio <= args.target else 'MISSED'})")
    print(f"verify                {len(runs)} runs, rows and sha256(trace_id, completion) "
          f"{runs[-1]['fingerprint']} equal after both loads: {'OK' if ok else 'MISMATCH'}")
    return ok


if __name__ == "__main__":
    main()
