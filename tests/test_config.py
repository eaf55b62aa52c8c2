from dataclasses import dataclass, field

import pytest

from toolkit.config import ConfigError, load_config
from toolkit.run import RunConfig, recipe_path, stage_configs


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
    cfg = load_config(RunConfig, bad)
    with pytest.raises(ConfigError, match=r"recipe smoke: sample: unknown key\(s\) \['kk'\]"):
        stage_configs(cfg, tmp_path)


def test_unknown_recipe_lists_packaged():
    with pytest.raises(ConfigError, match=r"cpu-demo.*smoke"):
        recipe_path("nope")
