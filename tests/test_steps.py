"""steps: cached steps whose keys chain through their inputs; results record their timing."""
import json

from toolkit.steps import MARKER, Step, run_step, skipped


def _chain(tmp_path, calls, a_config):
    keys = {}
    a = run_step(Step("a", tmp_path / "a", a_config, [], lambda: calls.append("a") or {"n": 1}), keys)
    b = run_step(Step("b", tmp_path / "b", {"x": 1}, ["a"], lambda: calls.append("b") or {"n": 2}), keys)
    return keys, a, b


def test_a_finished_step_is_skipped_and_a_changed_input_reruns_everything_downstream(tmp_path):
    calls = []
    keys, a, b = _chain(tmp_path, calls, {"k": 1})
    assert calls == ["a", "b"] and skipped(tmp_path / "b", keys["b"])
    (tmp_path / "b" / "leftover.txt").write_text("from the first run")
    again, *_ = _chain(tmp_path, calls, {"k": 1})
    assert calls == ["a", "b"] and again == keys                      # cached: nothing ran
    changed, *_ = _chain(tmp_path, calls, {"k": 2})
    assert calls == ["a", "b", "a", "b"] and changed["b"] != keys["b"]   # b re-ran: its input changed
    assert not (tmp_path / "b" / "leftover.txt").exists()              # the stale dir was removed


def test_a_volatile_field_does_not_change_the_key(tmp_path):
    keys = {}
    run_step(Step("a", tmp_path / "a", {"k": 1, "batch_size": 8}, [], lambda: {}, volatile=("batch_size",)), keys)
    first = keys["a"]
    run_step(Step("a", tmp_path / "a", {"k": 1, "batch_size": 64}, [], lambda: {}, volatile=("batch_size",)), keys)
    assert keys["a"] == first


def test_a_step_killed_midway_runs_again_with_its_key_and_records_its_timing(tmp_path):
    keys = {}
    step = Step("a", tmp_path / "a", {"k": 1}, [], lambda: {"n": sum(range(200_000))})
    run_step(step, keys)
    marker = json.loads((tmp_path / "a" / MARKER).read_text())
    timing = marker["result"]["timing"]
    assert marker["done"] and timing["wall_s"] >= 0 and timing["cpu_s"] >= 0 and timing["gpu_s"] == 0.0
    marker["done"] = False                                              # as if killed before the end
    (tmp_path / "a" / MARKER).write_text(json.dumps(marker))
    (tmp_path / "a" / "partial").write_text("kept: the step resumes from it")
    ran = []
    run_step(Step("a", tmp_path / "a", {"k": 1}, [], lambda: ran.append(1) or {"n": 0}), keys)
    assert ran == [1] and (tmp_path / "a" / "partial").exists()
