"""steps: cached steps whose keys chain through their inputs; results record their timing."""
import json
import time
from dataclasses import dataclass, field

from toolkit.config import keyed, volatile
from toolkit.generation.roles import EndpointOptions, RoleConfig, TransformersOptions
from toolkit import steps
from toolkit.steps import MARKER, Step, run_step, skipped, stage_times, step_key


def _chain(tmp_path, calls, a_config):
    keys = {}
    a = run_step(Step("a", tmp_path / "a", a_config, [], lambda: calls.append("a") or {"n": 1}), keys)
    b = run_step(Step("b", tmp_path / "b", {"x": 1}, ["a"], lambda: calls.append("b") or {"n": 2}), keys)
    return keys, a, b


def test_a_finished_step_is_skipped_and_a_changed_input_reruns_everything_downstream(tmp_path, caplog):
    caplog.set_level("INFO", logger="toolkit.steps")
    calls = []
    keys, a, b = _chain(tmp_path, calls, {"k": 1})
    assert calls == ["a", "b"] and skipped(tmp_path / "b", keys["b"])
    (tmp_path / "b" / "leftover.txt").write_text("from the first run")
    again, *_ = _chain(tmp_path, calls, {"k": 1})
    assert calls == ["a", "b"] and again == keys                      # cached: nothing ran
    changed, *_ = _chain(tmp_path, calls, {"k": 2})
    assert calls == ["a", "b", "a", "b"] and changed["b"] != keys["b"]   # b re-ran: its input changed
    assert not (tmp_path / "b" / "leftover.txt").exists()              # the stale dir was removed
    assert "b: emptied" in caplog.text and "kept" not in caplog.text    # it had no shards to keep


def test_a_stale_step_keeps_its_self_keyed_units_and_reuses_each_under_its_own_key(tmp_path, caplog):
    caplog.set_level("INFO", logger="toolkit.steps")
    from toolkit.resume import unit
    made = []

    def work(budget, model="m"):
        def fn():
            rows = [unit(tmp_path / "a" / "shards" / f"shard-{i:05d}.parquet", {"model": model}, [i],
                         lambda i=i: made.append(i) or [{"i": i}]) for i in range(budget)]
            (tmp_path / "a" / "out.txt").write_text(str(budget))
            return {"rows": len(rows)}
        return Step("a", tmp_path / "a", {"budget": budget, "model": model}, [], fn)
    run_step(work(1), {})
    (tmp_path / "a" / "leftover.txt").write_text("from the first run")
    assert run_step(work(2), {})["rows"] == 2
    assert made == [0, 1] and not (tmp_path / "a" / "leftover.txt").exists()   # shard 0 was reused
    assert "its self-keyed shards kept" in caplog.text
    run_step(work(2, model="other"), {})
    assert made == [0, 1, 0, 1]                                                # another model: redone


@dataclass
class Stage:
    k: int = 1
    batch_size: int = volatile(8, "how, not what: left out of the key")
    role: RoleConfig = field(default_factory=lambda: RoleConfig("tiny-random", backend="transformers"))


def _key(tmp_path, cfg, engine="") -> str:
    keys = {}
    run_step(Step("a", tmp_path / "a", cfg, [], lambda: {}, engine=engine), keys)
    return keys["a"]


def test_a_field_marked_volatile_stays_out_of_the_key_and_any_other_enters_it(tmp_path):
    first = _key(tmp_path, Stage())
    assert _key(tmp_path, Stage(batch_size=64)) == first
    assert _key(tmp_path, {"nested": [Stage(batch_size=2)]}) == _key(tmp_path, {"nested": [Stage()]})
    same_role = RoleConfig("tiny-random", backend="transformers", transformers=TransformersOptions(batch_size=2))
    assert _key(tmp_path, Stage(role=same_role)) == first                # a role's batch size: how
    assert _key(tmp_path, Stage(k=2)) != first                           # a result-changing field
    assert _key(tmp_path, Stage(role=RoleConfig("tiny-random", backend="transformers", dtype="float32"))) != first
    assert _key(tmp_path, Stage(), engine="vllm 0.32.0") != first       # the engine is keyed too
    served = [RoleConfig("m", backend="endpoint", endpoint=EndpointOptions(urls=[u], retries=r))
              for u, r in (("http://a:1", 8), ("http://b:2", 0))]       # where it ran: not keyed
    assert keyed(served[0]) == keyed(served[1]) == {"model": "m", "dtype": "auto", "endpoint": {"api": "tgi"}}


def test_the_key_names_the_engine_that_ran_when_auto_falls_back(tmp_path, monkeypatch):
    """Under ``auto`` with vLLM chosen but failing to start, the builder falls back to transformers:
    the step's result is keyed by transformers, not by the vLLM it was keyed by before it ran."""
    import toolkit.generation as G
    from toolkit.generation.vllm_engine import VLLMError
    monkeypatch.delenv("QUP_BACKEND", raising=False)
    monkeypatch.setattr(G, "_FELL_BACK", [])
    monkeypatch.setattr(G, "vllm_usable", lambda: "")                  # vLLM looks usable here
    role = RoleConfig("tiny-random")
    assert role.engine().startswith("vllm ")
    ran = []

    def work():       # what RoleConfig.generator does when vLLM does not start under auto
        assert G.fall_back(VLLMError("backend vllm cannot load model: no KV cache room"))
        ran.append(1)
        return {}
    keys = {}
    run_step(Step("s", tmp_path / "s", {"role": role}, [], work, engine=role.engine), keys)
    marker = json.loads((tmp_path / "s" / MARKER).read_text())
    assert role.engine().startswith("transformers ") and marker["engine"] == role.engine()
    assert marker["key"] == keys["s"] == step_key(Step("s", tmp_path, {"role": role}, [], work,
                                                       engine=role.engine()), {})
    run_step(Step("s", tmp_path / "s", {"role": role}, [], work, engine=role.engine), keys)
    assert ran == [1]                  # the next run on this machine finds it under what ran


def test_a_running_step_marks_its_time_spent(tmp_path, monkeypatch):
    monkeypatch.setattr(steps, "HEARTBEAT_S", 0.05)
    seen = []

    def work():
        time.sleep(0.4)
        seen.append(json.loads((tmp_path / "a" / MARKER).read_text()))
        return {}
    run_step(Step("a", tmp_path / "a", {}, [], work), {})
    assert not seen[0]["done"] and 0.1 < seen[0]["spent_s"] <= 0.5


def test_a_step_killed_midway_runs_again_with_its_key_and_records_its_timing(tmp_path):
    keys = {}
    step = Step("a", tmp_path / "a", {"k": 1}, [], lambda: {"n": sum(range(200_000))})
    run_step(step, keys)
    marker = json.loads((tmp_path / "a" / MARKER).read_text())
    timing = marker["result"]["timing"]
    assert marker["done"] and timing["wall_s"] >= 0 and timing["cpu_s"] >= 0 and timing["gpu_s"] == 0.0
    marker.update(done=False, spent_s=30.0)              # as if killed 30 s in (its last heartbeat)
    (tmp_path / "a" / MARKER).write_text(json.dumps(marker))
    partial = tmp_path / "a" / "partial"
    partial.write_text("kept: the step resumes from it")
    ran = []
    run_step(Step("a", tmp_path / "a", {"k": 1}, [], lambda: ran.append(1) or {"n": 0}), keys)
    assert ran == [1] and partial.exists()
    timing = json.loads((tmp_path / "a" / MARKER).read_text())["result"]["timing"]
    assert timing["attempts"] == 2 and timing["resumed_wall_s"] == 30.0 and 30 <= timing["wall_s"] < 60
    assert stage_times(tmp_path) == {"a": {"steps": 1, "wall_s": timing["wall_s"], "resumed": 1}}
