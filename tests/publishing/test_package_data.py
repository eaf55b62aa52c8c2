"""A wheel install (HF Jobs, a Space) renders cards: the templates ship as package data."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_ships_card_templates_and_renders_a_card(tmp_path):
    src = tmp_path / "src"  # a copy: an in-tree build/ would leave stale modules for later wheels
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path / "dist"), str(src)],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert build.returncode == 0, build.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("dataset_card.md.j2", "model_card.md.j2"):
        assert f"toolkit/publishing/templates/{name}" in names
        shipped = zipfile.ZipFile(wheel).read(f"toolkit/publishing/templates/{name}")
        assert shipped == (ROOT / "dataset_cards" / name).read_bytes()  # one source: dataset_cards/
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = ("import toolkit, sys; from toolkit.publishing.cards import render_model_card; "
            "assert toolkit.__file__.startswith(sys.argv[1]), toolkit.__file__; "
            "print(render_model_card('me/a', 'v1', {'base_model': 'org/base'}, []))")
    out = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": ""})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "base_model: org/base" in out.stdout
