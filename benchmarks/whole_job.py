"""A whole job before and after vLLM: the same recipe run from an empty run dir once per engine
(``QUP_BACKEND`` decides what ``backend: auto`` picks), timed end to end and per stage (from the
run's step markers), with the peak resident memory of the whole process tree (the vLLM engines
run in child processes). One run each, one after the other, nothing else on the machine: the
ratio is printed with the CPU's flags. Models must be prepared already (``make demo`` once).

    .venv/bin/python benchmarks/whole_job.py cpu-demo                  # make demo's recipe
    .venv/bin/python benchmarks/whole_job.py cpu-paradox --command study

Targets (issue 20): ``make demo`` <= 20 min on vLLM; ``qup study cpu-paradox`` <= 2/3 of its
transformers time; the demo's peak memory reported before and after.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from toolkit.steps import stage_times


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants now (0 once it is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def kill_tree(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
    except psutil.Error:
        pass
    proc.kill()


def run(command: str, recipe: str, run_dir: Path, backend: str, log: Path) -> dict:
    """One job from an empty run dir: wall seconds, peak tree RSS, exit code, stages."""
    shutil.rmtree(run_dir, ignore_errors=True)
    env = {**os.environ, "QUP_BACKEND": backend}
    cmd = [sys.executable, "-m", "toolkit.cli", command, recipe, "--run-dir", str(run_dir)]
    start, peak = time.perf_counter(), 0
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        done = threading.Event()

        def watch():
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_rss(proc.pid))
                time.sleep(0.5)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            code = proc.wait()
        finally:              # interrupted: the job (and its engines) go too
            done.set()
            kill_tree(proc)
        watcher.join()
    wall = time.perf_counter() - start
    print(f"{backend}: exit {code}, {wall / 60:.1f} min, peak RSS {peak / 2**30:.1f} GiB (log {log})",
          flush=True)
    return {"wall_s": wall, "peak_rss": peak, "code": code, "stages": stage_times(run_dir)}


def flags() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "lscpu unavailable"
    field = {ln.split(":", 1)[0]: ln.split(":", 1)[1].strip() for ln in text.splitlines() if ":" in ln}
    model, have = field.get("Model name", "?"), field.get("Flags", "").split()
    wanted = [f for f in have if f in {"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}]
    return f"{model}, {os.cpu_count()} CPUs, flags {' '.join(wanted)}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe")
    ap.add_argument("--command", choices=["run", "study"], default="run")
    ap.add_argument("--root", default="runs/whole-job", help="run dirs go under here (emptied first)")
    ap.add_argument("--backends", default="transformers,vllm")
    args = ap.parse_args()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    print(f"machine: {flags()}", flush=True)
    res = {b: run(args.command, args.recipe, root / f"{args.recipe}-{b}", b, root / f"{args.recipe}-{b}.log")
           for b in args.backends.split(",")}
    names = list(dict.fromkeys(n for r in res.values() for n in r["stages"]))
    print(f"\n| stage | {' | '.join(f'{b} min' for b in res)} |" + (" ratio |" if len(res) == 2 else ""))
    print("|---|" + "---:|" * (len(res) + (len(res) == 2)))
    rows = [(n, [r["stages"].get(n, {}).get("wall_s") for r in res.values()]) for n in names]
    rows.append(("**whole job**", [r["wall_s"] for r in res.values()]))
    for name, walls in rows:
        cells = ["—" if w is None else f"{w / 60:.1f}" for w in walls]
        ratio = [] if len(res) != 2 else [f"{walls[0] / walls[1]:.2f}x" if all(walls) else "—"]
        print(f"| {name} | {' | '.join(cells + ratio)} |")
    rss = " | ".join(f"{r['peak_rss'] / 2**30:.1f}" for r in res.values())
    print(f"| peak RSS, GiB | {rss} |" + (" |" if len(res) == 2 else ""))
    if any(r["code"] for r in res.values()):
        sys.exit(1)


if __name__ == "__main__":    # the vLLM engine spawns processes that re-import this module
    main()
