"""Layers run one way: the Hub server knows nothing of QUP's stages; stages know nothing of runs."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "toolkit"
# what strings stages together, and the user-facing surfaces: nothing below imports them
TOP = {"cli", "commands", "run", "study", "jobs", "space", "report", "steps"}
# package -> toolkit packages/modules it must never import (every subpackage has an entry)
FORBIDDEN = {
    "prompts": TOP | {"generation", "diagnostics", "stages", "variants", "publishing", "hub", "serve"},
    "hub": TOP | {"stages", "variants", "publishing", "generation", "serve", "diagnostics"},
    "generation": TOP | {"stages", "variants", "publishing", "hub", "diagnostics", "serve"},
    "diagnostics": TOP | {"stages", "variants", "publishing", "hub", "serve"},
    "serve": TOP | {"stages", "variants", "publishing", "hub", "diagnostics"},
    "stages": TOP | {"variants", "publishing", "hub", "serve"},
    "variants": TOP | {"publishing", "hub", "serve"},
    "publishing": TOP | {"stages", "serve"},
    "study": {"cli", "commands", "jobs", "space", "serve"},
    "jobs": {"space", "serve", "study"},
    "space": {"cli", "commands", "run", "study", "jobs", "steps", "stages", "variants"},
}


def toolkit_imports(path: Path) -> set[str]:
    """First component below ``toolkit`` of every import in ``path`` (relative ones resolved)."""
    pkg = path.relative_to(PKG.parent).with_suffix("").parts[:-1]  # e.g. ("toolkit", "hub")
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = list(pkg[:len(pkg) - node.level + 1]) if node.level else []
            parts = base + (node.module.split(".") if node.module else [])
            names = [parts + [a.name] for a in node.names] if not node.module else [parts]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".") for a in node.names]
        else:
            continue
        out |= {p[1] for p in names if len(p) > 1 and p[0] == "toolkit"}
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package):
    bad = {f"{f.relative_to(PKG.parent)} imports toolkit.{m}"
           for f in (PKG / package).rglob("*.py") for m in toolkit_imports(f) & FORBIDDEN[package]}
    assert not bad, sorted(bad)


def test_the_checker_sees_relative_imports(tmp_path):
    assert toolkit_imports(PKG / "variants" / "rft.py") >= {"config", "stages", "variants"}
    assert "errors" in toolkit_imports(PKG / "generation" / "roles.py")


def test_every_subpackage_has_layer_rules():
    packages = {p.name for p in PKG.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(FORBIDDEN), f"add layer rules for {sorted(packages - set(FORBIDDEN))}"
