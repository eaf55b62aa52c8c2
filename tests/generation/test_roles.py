"""A model role is one typed object: model + backend + that backend's options, one builder."""
import dataclasses

import pytest

from toolkit.config import ConfigError, from_dict, keyed
from toolkit.generation import Request, SamplingParams, engine_of as engine
from toolkit.generation.endpoint import EndpointGenerator
from toolkit.generation.engine import LocalEngine
from toolkit.generation.roles import (BACKENDS, EndpointOptions, ReferenceOracle, RoleConfig,
                                      TransformersOptions, VLLMOptions)
from toolkit.serve import TGIServer


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), LoraConfig(r=4, target_modules=["q_proj"]))
    path = tmp_path_factory.mktemp("lora") / "a"
    peft.save_pretrained(path)
    return str(path)


def test_the_builder_makes_the_backend_the_role_names(tiny_model, adapter):
    role = RoleConfig(tiny_model, backend="transformers", dtype="float32", transformers=TransformersOptions(3))
    gen = role.generator()
    assert isinstance(gen, LocalEngine) and (gen.batch_size, gen.dtype) == (3, "float32")
    assert engine(gen) == role.engine() == engine(role) and role.engine().startswith("transformers ")
    tuned = role.generator(adapter)                       # one adapter: every request
    assert tuned.default_adapter == "default" and tuned.merged
    several = role.generator({"a": adapter})              # several: picked per request
    assert several.default_adapter is None and list(several.adapters) == ["a"]
    assert isinstance(RoleConfig("reference").generator(), ReferenceOracle)
    assert RoleConfig("reference").engine() == "reference"


def test_an_endpoint_role_serves_the_same_greedy_text(tiny_model):
    local = RoleConfig(tiny_model, backend="transformers", dtype="float32", transformers=TransformersOptions(1))
    req = [Request("<|im_start|>user\n2+3?<|im_end|>\n<|im_start|>assistant\n",
                   SamplingParams(max_new_tokens=6, do_sample=False, temperature=0.0))]
    with TGIServer(tiny_model, max_batch_size=1, dtype="float32") as server:
        role = RoleConfig(tiny_model, backend="endpoint", endpoint=EndpointOptions(urls=[server.url], retries=0))
        gen = role.generator()
        assert isinstance(gen, EndpointGenerator) and role.engine() == engine(gen) == "tgi endpoint"
        assert gen.generate(req, progress=False)[0].text == local.generator().generate(req, progress=False)[0].text


@pytest.mark.parametrize("data, message", [
    (dict(backend="tgi-ish"), r"backend must be one of \['auto', 'transformers', 'vllm', 'endpoint', "
                              r"'reference'\], got 'tgi-ish'"),
    (dict(backend="transformers", vllm={"max_model_len": 512}),
     "vllm.max_model_len=512 is a vLLM option, but backend is transformers"),
    (dict(backend="vllm", transformers={"batch_size": 8}),
     "transformers.batch_size=8 is a transformers option, but backend is vllm"),
    (dict(endpoint={"urls": ["http://a:1"]}), r"endpoint.urls=\['http://a:1'\] is an endpoint option, but backend is auto"),
    (dict(backend="endpoint"), "backend endpoint needs endpoint.urls"),
    (dict(backend="endpoint", endpoint={"urls": ["ftp://a"]}), "endpoint.urls: 'ftp://a' is not an http"),
    (dict(backend="endpoint", endpoint={"urls": ["http://a"], "api": "grpc"}), "endpoint.api must be tgi or openai"),
    (dict(backend="reference"), "backend: reference serves model `reference`, got model 'm'"),
])
def test_a_wrong_role_is_one_error_naming_the_field_and_value(data, message):
    with pytest.raises(ConfigError, match=r"^oracle(\.\w+)?: " + message):
        from_dict(RoleConfig, {"model": "m", **data}, "oracle")


def test_in_a_recipe_the_error_names_the_role():
    from toolkit.run import load_recipe
    with pytest.raises(ConfigError, match=r"recipe smoke\.oracle: vllm\.max_model_len=512 is a vLLM option, "
                                          "but backend is transformers"):
        load_recipe("smoke", {"oracle": {"model": "m", "backend": "transformers", "vllm": {"max_model_len": 512}}})
    with pytest.raises(ConfigError, match=r"recipe smoke\.judge: backend must be one of .* got 'tgi'"):
        load_recipe("smoke", {"judge": {"backend": "tgi"}})


def test_a_role_from_yaml_a_string_and_its_old_flat_keys():
    assert from_dict(RoleConfig, {"model": "m", "vllm": {"max_model_len": 4096}}).vllm.max_model_len == 4096
    assert RoleConfig.from_str("qwen") == from_dict(RoleConfig, {"model": "qwen"})
    old = from_dict(RoleConfig, {"model": "m", "backend": "endpoint", "endpoints": ["http://a:1"],
                                 "api": "openai", "retries": 2})
    assert old.endpoint == EndpointOptions(urls=["http://a:1"], api="openai", retries=2)
    assert from_dict(RoleConfig, {"model": "m", "backend": "local", "batch_size": 4}).transformers.batch_size == 4


def test_what_of_a_role_changes_results(monkeypatch):
    """The model, the dtype and the resolved backend's result-changing options; not the batch size,
    the URLs, retries or which backend name was asked for (the engine is keyed apart)."""
    monkeypatch.setenv("QUP_BACKEND", "vllm")
    role = RoleConfig("m", vllm=VLLMOptions(max_model_len=2048, kv_cache_gib=8.0))
    assert keyed(role) == {"model": "m", "dtype": "auto", "vllm": {"tensor_parallel_size": 1, "max_model_len": 2048}}
    monkeypatch.setenv("QUP_BACKEND", "transformers")
    assert keyed(role) == keyed(dataclasses.replace(role, backend="transformers", vllm=VLLMOptions())) == {
        "model": "m", "dtype": "auto", "transformers": {}}
    assert keyed(RoleConfig("reference")) == {"model": "reference", "dtype": "auto"}


def test_every_backend_is_one_registry_entry_with_its_options_section():
    fields = {f.name for f in dataclasses.fields(RoleConfig)}
    assert {b.options for b in BACKENDS.values() if b.options} <= fields
    assert set(BACKENDS) == {"transformers", "vllm", "endpoint", "reference"}
