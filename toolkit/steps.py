"""Cached steps whose keys chain through their inputs, so a change flows downstream.

A :class:`Step` is a unit of work with an output dir, a config and the names of the steps it
reads. Its cache key hashes its config (minus the fields declared :func:`~toolkit.config.volatile`:
they change how it runs, not what it makes), the engine that serves its models and the keys of
its inputs. A step is skipped only when its dir holds a finished marker with the same key; a dir
with another key is stale and emptied before the step runs again (all but its self-keyed
:data:`UNITS`), so nothing downstream of a change is ever served from an old result (as
distilabel invalidates a changed step and its successors). A step killed midway keeps its key
and resumes (sample shards, training checkpoints). Every result records how long its step took (``timing``: wall, CPU and,
when CUDA is in use, GPU seconds), so a run's markers tell what a fresh run of it costs. A running
step's marker says every :data:`HEARTBEAT_S` how long it has run (``spent_s``), so the wall time of
a resumed step adds what its killed attempts spent (``attempts``, ``resumed_wall_s``), also when
the run dir travelled in git to another machine.

Example:
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> keys = {}
    >>> run_step(Step("a", d / "a", {"k": 1}, [], lambda: {"n": 1}), keys)["n"]
    1
    >>> run_step(Step("b", d / "b", {}, ["a"], lambda: {"n": 2}), keys)["n"]
    2
    >>> skipped(d / "b", keys["b"])
    True
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .config import keyed

log = logging.getLogger(__name__)
MARKER = "qup_stage.json"
HEARTBEAT_S = 60.0      # how often a running step's marker records the time spent so far
# a step's units of work whose every file carries its own key (toolkit.resume.unit): a stale dir
# keeps them, and each is reused only under its own key (raising an Oracle's budget keeps the shards
# already asked; a changed model or prompt still redoes them)
UNITS = ("shards",)
# Called as fn(step, result) after a step ran and its finished marker was written (not when it
# was skipped as cached); e.g. a job uploads the step's dir to its run-state repo (toolkit.jobs).
ON_DONE: list[Callable[["Step", dict], None]] = []


@dataclass
class Step:
    name: str                                   # "sample", "variant:rft", "train:rft", ...
    out: Path
    config: Any                                 # a config dataclass or a JSON-able mapping
    inputs: list[str]                           # names of the steps it reads
    fn: Callable[[], dict]                      # does the work, returns a JSON-able result
    # What serves its models ("slm: vllm 0.32.0"), keyed: results of two engines are never served
    # from one cache. A callable is asked again after the step ran: when the answer changed (auto
    # fell back from vLLM to transformers), the result is recorded under the engine that ran.
    engine: str | Callable[[], str] = ""

    def engine_now(self) -> str:
        return self.engine() if callable(self.engine) else self.engine


def _jsonable(config: Any) -> Any:
    data = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
    return json.loads(json.dumps(data, default=str, sort_keys=True))


def step_key(step: Step, keys: dict[str, str], engine: str | None = None) -> str:
    """sha256 of the step's name, config (its :func:`~toolkit.config.keyed` part), engine and its
    inputs' keys."""
    config = keyed(step.config)
    engine = step.engine_now() if engine is None else engine
    missing = [i for i in step.inputs if i not in keys]
    if missing:
        raise RuntimeError(f"step {step.name}: inputs {missing} have not run yet")
    payload = {"step": step.name, "config": config, "inputs": {i: keys[i] for i in step.inputs}}
    if engine:     # results of two engines are never served from one cache
        payload["engine"] = engine
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _marker(out: Path) -> dict | None:
    try:
        return json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return None


def skipped(out: Path, key: str) -> bool:
    """Whether ``out`` holds a finished result with cache key ``key``."""
    m = _marker(out)
    return bool(m and m.get("key") == key and m.get("done"))


def _write_marker(out: Path, data: dict) -> None:
    tmp = out / (MARKER + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(out / MARKER)


def _clear(out: Path) -> list[str]:
    """Empty a stale step dir, all but its :data:`UNITS` dirs; return the names of those kept."""
    kept = []
    for path in sorted(out.iterdir()):
        if path.name in UNITS and path.is_dir() and not path.is_symlink():
            kept.append(path.name)
            continue
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    return kept


def run_step(step: Step, keys: dict[str, str]) -> dict:
    """Run ``step`` unless its result is cached under the same key; record its key in ``keys``."""
    engine = step.engine_now()
    key = step_key(step, keys, engine)
    keys[step.name] = key
    out = Path(step.out)
    m = _marker(out)
    if m and m.get("key") == key and m.get("done"):
        log.info("%s: done already (key %s), skipping", step.name, key)
        return m["result"]
    if out.exists() and (m is None or m.get("key") != key):
        why = "its inputs or config changed" if m else "it holds no marker of this run"
        kept = _clear(out)
        log.info("%s: emptied %s (%s)%s", step.name, out, why,
                 f"; its self-keyed {', '.join(kept)} kept" if kept else "")
        m = None
    out.mkdir(parents=True, exist_ok=True)
    before = round(float((m or {}).get("spent_s") or (m or {}).get("resumed_wall_s") or 0.0), 2)
    resumed = {"attempts": m.get("attempts", 1) + 1, "resumed_wall_s": before} if m else {}
    record = {"step": step.name, "key": key, "done": False, "config": _jsonable(step.config),
              **({"engine": engine} if engine else {}),
              "inputs": {i: keys[i] for i in step.inputs}, **resumed}
    _write_marker(out, record)
    t0, c0 = time.perf_counter(), time.process_time()
    stop = threading.Event()

    def heartbeat():
        while not stop.wait(HEARTBEAT_S):
            _write_marker(out, {**record, "spent_s": round(before + time.perf_counter() - t0, 2)})
    beat = threading.Thread(target=heartbeat, daemon=True, name=f"heartbeat {step.name}")
    beat.start()
    try:
        result = step.fn()
    finally:
        stop.set()
        beat.join()
    wall = round(time.perf_counter() - t0, 2)
    result = {**result, "timing": {"wall_s": round(wall + before, 2), "gpu_s": wall if _cuda() else 0.0,
                                   "cpu_s": round(time.process_time() - c0, 2), **resumed}}
    ran = step.engine_now()
    if ran != engine:     # e.g. vLLM did not start under auto: key the result by what ran
        log.info("%s: ran on %s, not %s: keyed by what ran", step.name, ran, engine)
        key = keys[step.name] = step_key(step, keys, ran)
        record = {**record, "key": key, "engine": ran}
    _write_marker(out, {**record, "done": True, "result": result})
    for hook in list(ON_DONE):
        hook(step, result)
    return result


def stage_times(run: str | Path) -> dict[str, dict]:
    """Wall time of a run dir's finished steps, from their markers: {stage: {"steps", "wall_s",
    "resumed"}}, stages in the order their first step ended. A stage is a step's name up to ':'
    (``train``, ``evaluate``), except that every variant and score step is its own
    (``variant:oracle_synth``): their costs differ by model."""
    stages: dict[str, dict] = {}
    for path in sorted(Path(run).rglob(MARKER), key=lambda p: p.stat().st_mtime):     # as they ended
        m = _marker(path.parent)
        if not m or not m.get("done") or not isinstance(m.get("step"), str):
            continue
        timing = (m.get("result") or {}).get("timing") or {}
        name = m["step"] if m["step"].startswith(("variant:", "score:")) else m["step"].split(":")[0]
        s = stages.setdefault(name, {"steps": 0, "wall_s": 0.0, "resumed": 0})
        s["steps"] += 1
        s["wall_s"] += timing.get("wall_s") or 0.0
        s["resumed"] += timing.get("attempts", 1) > 1
    return stages


def _cuda() -> bool:
    """Whether this process computes on CUDA (torch is never imported just to ask)."""
    torch = sys.modules.get("torch")
    return bool(torch and torch.cuda.is_available())
