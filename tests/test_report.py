"""The run report states how every score was obtained and flags evaluations of different protocols."""
from toolkit.report import write_report
from toolkit.sources import SourceConfig
from toolkit.stages.evaluate import EvaluateConfig, evaluate_command


def test_report_states_the_protocol_and_flags_a_mix(tiny_model, shared_data, tmp_path):
    common = dict(model=tiny_model, problems=SourceConfig(source="svamp", limit=2), max_new_tokens=4)
    greedy = evaluate_command(EvaluateConfig(**common, out=str(tmp_path / "a")))
    summary = {"name": "t", "model": tiny_model, "eval_source": "svamp", "evaluations": {"base": greedy}}
    text = write_report(tmp_path, summary).read_text()
    assert "## Evaluation protocol" in text and greedy["protocol_id"] in text and "greedy" in text
    assert "Not one column" not in text
    sampled = evaluate_command(EvaluateConfig(**common, temperature=0.8, n=2, out=str(tmp_path / "b")))
    summary["evaluations"]["rft"] = sampled
    text = write_report(tmp_path, summary).read_text()
    assert "**Not one column**: the evaluations differ in sampling" in text
    assert sampled["protocol_id"] in text and "sampled n=2 T=0.8" in text
