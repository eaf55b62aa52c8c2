"""The CLI: one parser per command derived from its typed configs; a bad role is one line."""
import dataclasses
import inspect

import pytest

from toolkit import cli


def _one_error(argv, capsys) -> str:
    assert cli.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qup: error: "), lines
    return lines[0]


@pytest.mark.parametrize("argv, message", [
    (["sample", "--backend", "tgi-ish"],
     "qup sample.slm: backend must be one of ['auto', 'transformers', 'vllm', 'endpoint', 'reference'], got 'tgi-ish'"),
    (["sample", "--backend", "transformers", "--vllm-max-model-len", "512"],
     "qup sample.slm: vllm.max_model_len=512 is a vLLM option, but backend is transformers"),
    (["evaluate", "--backend", "endpoint"], "qup evaluate.model: backend endpoint needs endpoint.urls: [URL, ...]"),
    (["score", "--reward", "none", "--learner-model", "m", "--learner-backend", "transformers",
      "--learner-vllm-tensor-parallel-size", "2"],
     "qup score.learner: vllm.tensor_parallel_size=2 is a vLLM option, but backend is transformers"),
    (["oracle_refine", "--oracle-model", "m", "--oracle-backend", "vllm", "--oracle-transformers-batch-size", "4"],
     "qup oracle_refine.oracle: transformers.batch_size=4 is a transformers option, but backend is vllm"),
])
def test_a_bad_role_is_one_line_naming_role_field_and_value_before_any_work(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert _one_error(argv + ["--source" if argv[0] in ("sample", "evaluate") else "--data", "svamp",
                              "--out", str(out)] if argv[0] != "oracle_refine" else
                      argv + ["--traces", str(tmp_path), "--out", str(out)], capsys) == f"qup: error: {message}"
    assert not out.exists()


def test_a_bad_role_in_a_recipe_fails_before_any_work(tmp_path, capsys):
    run_dir = tmp_path / "r"
    line = _one_error(["run", "smoke", "--run-dir", str(run_dir), "--set", "oracle.model=m",
                       "--set", "oracle.backend=transformers", "--set", "oracle.vllm.max_model_len=512"], capsys)
    assert line == ("qup: error: recipe smoke.oracle: vllm.max_model_len=512 is a vLLM option, "
                    "but backend is transformers")
    assert not run_dir.exists()


def test_commands_are_registered_from_their_configs():
    """``build_parser`` only registers: each command is its config dataclasses and one function."""
    assert len(inspect.getsource(cli.build_parser).splitlines()) < 60
    commands = cli._commands()
    assert all(c.configs and all(dataclasses.is_dataclass(k) for k in c.configs) and callable(c.fn)
               for c in commands)
    from toolkit.variants import REGISTRY
    names = {c.name for c in commands}
    assert {v for v, x in REGISTRY.items() if v != "self" and not x.scored} <= names
    text = cli.build_parser()._subparsers._group_actions[0].choices["score"].format_help()
    for flag in ("--judge-model", "--judge-backend", "--judge-endpoint-urls", "--learner-vllm-max-model-len",
                 "--shard", "--config"):
        assert flag in text


def test_every_command_help_renders_its_field_docs():
    """A field's help with a bare ``%`` once printed argparse's internals into ``--help``."""
    for name, sub in cli.build_parser()._subparsers._group_actions[0].choices.items():
        text = sub.format_help()
        assert "option_strings" not in text and "--help" in text, name
    assert "decodes up to a fifth slower" in " ".join(
        cli.build_parser()._subparsers._group_actions[0].choices["evaluate"].format_help().split())


def test_flags_parse_into_the_typed_configs(tmp_path):
    parser = cli.build_parser()
    args = parser.parse_args(["sample", "--model", "tiny-random", "--backend", "endpoint", "--endpoint-urls",
                              "http://a:1", "--endpoint-urls", "http://b:2", "--endpoint-api", "openai",
                              "--k", "2", "--shard", "0/2", "--source", "svamp"])
    cfg, shard = [cli.C.load_config(k, None, cli.C.overrides_from_args(args, f"c{i}"))
                  for i, k in enumerate(args.command.configs)]
    assert (cfg.slm.backend, cfg.slm.endpoint.urls, cfg.slm.endpoint.api, cfg.k) == (
        "endpoint", ["http://a:1", "http://b:2"], "openai", 2)
    assert shard.shard == "0/2" and cfg.problems.source == "svamp"
    hub = parser.parse_args(["hub", "serve", "--root", str(tmp_path), "--jobs", "off", "--port", "0"])
    assert (hub.c0__jobs, hub.c0__port) == ("off", 0)      # a choice stays a string, not YAML's false
