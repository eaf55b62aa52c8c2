"""Layers run one way: the Hub server knows nothing of QUP's stages; stages know nothing of runs."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "toolkit"
# package -> toolkit packages/modules it must never import
FORBIDDEN = {
    "hub": {"stages", "variants", "publishing", "run", "steps", "report", "generation", "serve"},
    "generation": {"stages", "variants", "publishing", "run", "hub"},
    "stages": {"variants", "publishing", "run", "steps", "report", "hub"},
    "variants": {"publishing", "run", "steps", "report", "hub"},
    "publishing": {"stages", "run", "steps"},
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
