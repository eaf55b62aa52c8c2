import re
from dataclasses import dataclass, field

import pytest

import argparse

from toolkit.config import ConfigError, add_dataclass_args, load_config, overrides_from_args
from toolkit.errors import QupError
from toolkit.run import load_recipe, recipe_path, stage_configs
from toolkit.sources import SourceConfig


@dataclass
class Inner:
    k: int = 4
    temperature: float = 0.7
    stop: list[str] = field(default_factory=list)
    limit: int | None = None


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text('k: 8\ntemperature: 1\nstop: ["\\n\\n"]\n')
    cfg = load_config(Inner, path, {"k": 2})
    assert (cfg.k, cfg.temperature, cfg.stop, cfg.limit) == (2, 1.0, ["\n\n"], None)


def test_exponent_floats_from_yaml_and_flags():
    assert load_config(Inner, {"temperature": "1e-2"}).temperature == 0.01
    with pytest.raises(ConfigError, match="temperature: expected float, got 'hot'"):
        load_config(Inner, {"temperature": "hot"})


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("kk: 8\n")
    with pytest.raises(ConfigError, match=r"kk.*valid keys"):
        load_config(Inner, path)


def test_ill_typed_key_is_named():
    with pytest.raises(ConfigError, match=r"config\.k: expected int, got 'many'"):
        load_config(Inner, {"k": "many"})
    with pytest.raises(ConfigError, match=r"config\.limit"):
        load_config(Inner, {"limit": [1]})


def test_recipe_stage_sections_are_validated(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe_path("smoke").read_text().replace("sample: {k: 2", "sample: {kk: 2"))
    with pytest.raises(ConfigError, match=r"recipe bad\.sample: unknown key\(s\) \['kk'\]"):
        load_recipe(str(bad))
    with pytest.raises(ConfigError, match=r"sample: k must be >= 1"):   # values: before any work
        stage_configs(load_recipe("smoke", {"sample": {"k": 0}}), tmp_path)
    with pytest.raises(ConfigError, match=r"rft\.max_per_problem: expected int"):
        load_recipe("cpu-demo", {"rft": {"max_per_problem": "two"}})
    with pytest.raises(ConfigError, match=r"unknown variant 'nope'; registered: \[.*'rft', 'selected', 'self'"):
        load_recipe("smoke", {"variants": ["nope"]})


@pytest.mark.parametrize("key, who", [
    ("sample.slm", "top-level `slm` role"), ("sample.out", "the run dir"),
    ("sample.source", None), ("evaluate.prompt", "evaluation uses the sampling prompt"),
    ("train.data", "the variant's dir"), ("train.dataset_revision", "publishing")])
def test_keys_the_run_owns_are_rejected_not_ignored(key, who):
    stage, leaf = key.split(".")
    if who is None:  # a source key belongs in train_problems / eval_problems, not in a stage section
        with pytest.raises(ConfigError, match=r"sample: unknown key\(s\) \['source'\]"):
            load_recipe("smoke", {stage: {leaf: "x"}})
        return
    with pytest.raises(ConfigError, match=rf"recipe smoke\.{stage}\.{leaf} is set by the run \(.*{re.escape(who)}"):
        load_recipe("smoke", {stage: {leaf: "x"}})


def test_recipe_keys_are_honoured(tmp_path):
    cfg = load_recipe("smoke", {"prompt": "p.txt", "slm": {"model": "m", "dtype": "float32"},
                                "train_problems": {"columns": {"question": "q"}, "config_name": "c"},
                                "evaluate": {"max_new_tokens": 7}})
    stages = stage_configs(cfg, tmp_path)
    assert stages["sample"].prompt == stages["evaluate:self"].prompt == "p.txt"
    assert stages["sample"].slm.model == stages["train:self"].model == stages["evaluate:base"].model.model == "m"
    assert stages["score:self"].learner is cfg.slm and stages["score:self"].judge is cfg.judge  # held once
    assert {stages["sample"].slm.dtype, stages["train:self"].dtype, stages["evaluate:self"].model.dtype} == {"float32"}
    assert stages["sample"].problems.columns == {"question": "q"}
    assert stages["sample"].problems.config_name == "c"
    assert stages["evaluate:base"].max_new_tokens == 7


def test_config_errors_are_qup_errors():
    assert issubclass(ConfigError, QupError)


@dataclass
class WithHidden:
    shown: int = field(default=1, metadata={"help": "a shown field"})
    secret: int = field(default=2, metadata={"help": "internal", "hidden": True})
    problems: SourceConfig = field(default_factory=SourceConfig)
    urls: list[str] = field(default_factory=list)


def test_cli_flags_hidden_fields_and_nested_configs():
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, WithHidden)
    text = parser.format_help()
    assert "--shown" in text and "--secret" not in text and "internal" not in text
    assert "--source" in text and "--config-name" in text
    args = parser.parse_args(["--secret", "5", "--source", "svamp", "--limit", "3"])
    overrides = overrides_from_args(args)
    assert overrides == {"secret": 5, "problems": {"source": "svamp", "limit": 3}}
    assert overrides_from_args(parser.parse_args(["--urls", "http://a:1", "--urls", "http://b:2"])) == {
        "urls": ["http://a:1", "http://b:2"]}                 # as the README's --endpoints example
    assert overrides_from_args(parser.parse_args(["--urls", "[x, y]"])) == {"urls": ["x", "y"]}
    cfg = load_config(WithHidden, {}, overrides)
    assert (cfg.secret, cfg.problems.source, cfg.problems.limit, cfg.problems.split) == (5, "svamp", 3, "test")


def test_unknown_recipe_lists_packaged():
    with pytest.raises(ConfigError, match=r"cpu-demo.*smoke"):
        recipe_path("nope")


RECIPE = "train_problems: {source: svamp}\neval_problems: {source: svamp}\n"


def _one_error(argv, capsys) -> str:
    """``qup ARGV`` fails with exit code 2 and one ``qup: error:`` line, no traceback."""
    from toolkit.cli import main
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines[-1].startswith("qup: error: "), err[-2000:]
    assert sum("error" in ln for ln in lines) == 1, lines
    return lines[-1]


def test_unreadable_recipes_and_sets_are_one_line(tmp_path, capsys):
    utf8 = tmp_path / "utf8.yaml"
    utf8.write_bytes(b"name: x\n" + RECIPE.encode() + b"prompt: \"\xff\xfe\"\n")
    assert f"{utf8}: line 4: not valid UTF-8" in _one_error(["run", str(utf8)], capsys)
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: x\nsample: " + "[" * 100_000 + "\n")
    assert f"{deep}: nested more than" in _one_error(["run", str(deep)], capsys)
    bad = {"sample.k=[0,": "--set sample.k: line 1, column 4: invalid YAML",
           "k=!!python/object/apply:os.system ['true']": "--set k: line 1, column 1: invalid YAML: could not "
                                                         "determine a constructor",
           "sample.k=" + "[" * 100_000: "--set sample.k: nested more than"}
    for item, words in bad.items():
        assert words in _one_error(["run", "smoke", "--set", item], capsys)
    line = _one_error(["run", "smoke", "--set", "sample=1", "--set", "sample.k=2"], capsys)
    assert "--set sample.k: sample is already set to 1, not a mapping" in line


def test_non_finite_numbers_and_escaping_names_are_refused(tmp_path, capsys):
    inf = tmp_path / "inf.yaml"
    inf.write_text("name: x\n" + RECIPE + "train: {learning_rate: .inf}\n")
    assert "recipe inf.train.learning_rate: expected a finite number, got inf" in \
        _one_error(["run", str(inf)], capsys)
    line = _one_error(["sample", "--model", "tiny-random", "--source", "svamp", "--temperature", ".nan",
                       "--out", str(tmp_path / "s")], capsys)
    assert "temperature: expected a finite number, got nan" in line and not (tmp_path / "s").exists()
    with pytest.raises(ConfigError, match=r"temperature: expected a finite number, got inf"):
        load_config(Inner, {"temperature": "inf"})                  # a string spelling counts too
    with pytest.raises(ConfigError, match=r"variant_options.rft.x\[0\]: expected a finite number"):
        load_recipe("smoke", {"rft": {"x": [float("nan")]}})       # inside an Any-typed section
    for name in ("../../x", "a/b", "..", ".hidden", ""):
        esc = tmp_path / "esc.yaml"
        esc.write_text(f"name: {name!r}\n" + RECIPE)
        assert "name: " in _one_error(["run", str(esc), "--run-dir", str(tmp_path / "r")], capsys)
    assert not (tmp_path / "r").exists() and load_recipe("smoke").name == "smoke"
