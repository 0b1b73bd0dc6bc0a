"""The package's layers (README, "The house"): every module imports only from its own folder and from the
layers below. Walks the imports of every module with ast; ``if TYPE_CHECKING:`` blocks are annotations only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "rnnkit"

# unit (a folder or a top-level module) -> layer; a unit may import a unit of a lower layer, or itself
LAYERS = {
    "_version": 0, "nn": 0,
    "config": 1, "metrics": 1,
    "settings": 2, "data": 2, "checkpoint": 2,
    "evaluate": 3, "runs": 3,
    "training": 4, "inference": 4,
    "viz": 5,
    "cli": 6, "serve": 6,
    "api": 7,                      # rnnkit/__init__.py, __main__.py, classify.py: the public names
}
API = {"__init__", "__main__", "classify"}
MODELS_MAY_IMPORT = {"torch", "numpy"}          # beside the standard library, nn/ needs nothing else


def unit_of(module: str) -> str:
    """'rnnkit.nn.cells' -> 'nn'; 'rnnkit', 'rnnkit.classify' -> 'api'."""
    parts = module.split(".")
    unit = parts[1] if len(parts) > 1 else "__init__"
    return "api" if unit in API else unit


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def imports(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module) of every import outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(source)
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    found = []
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            resolved = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module
            for a in node.names:        # `from rnnkit import x`: x's own unit if x is a module, else the API's
                sub = PACKAGE / a.name
                is_module = sub.is_dir() or sub.with_suffix(".py").exists()
                found.append((node.lineno, f"rnnkit.{a.name}" if resolved == "rnnkit" and is_module else resolved))
    return found


def violations(path: Path, source: str | None = None) -> list[str]:
    module = module_name(path)
    source = path.read_text(encoding="utf-8") if source is None else source
    mine = unit_of(module)
    out = []
    if mine not in LAYERS:
        return [f"{module}: not in any layer; add its unit to LAYERS here and to the README's map"]
    for line, target in imports(source, module, path.name == "__init__.py"):
        top = target.split(".")[0]
        if top == "rnnkit":
            theirs = unit_of(target if target != "rnnkit" else "rnnkit")
            if theirs == mine:
                continue
            if theirs not in LAYERS:
                out.append(f"{module}:{line} imports {target}, which is in no layer")
            elif LAYERS[theirs] >= LAYERS[mine]:
                out.append(f"{module}:{line} imports {target}: {theirs} (layer {LAYERS[theirs]}) is not below "
                           f"{mine} (layer {LAYERS[mine]})")
        elif mine == "nn" and top not in MODELS_MAY_IMPORT and top not in sys.stdlib_module_names \
                and top != "__future__":
            out.append(f"{module}:{line} imports {target}: models import only torch and NumPy")
    return out


def test_every_import_points_down():
    found = [v for path in sorted(PACKAGE.rglob("*.py")) for v in violations(path)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("where,source,complaint", [
    ("nn/cells.py", "from ..training import trainer\n", "is not below nn"),
    ("data/corpus.py", "import rnnkit.inference.sampling\n", "is not below data"),
    ("training/lm.py", "from ..inference import sampling\n", "is not below training"),   # siblings stay apart
    ("nn/models.py", "import tqdm\n", "models import only torch"),
    ("config.py", "from . import __version__\n", "is not below config"),
    ("gadgets.py", "import os\n", "not in any layer"),
])
def test_the_check_catches_an_upward_import(where, source, complaint):
    got = violations(PACKAGE / where, source)
    assert got and complaint in got[0], got


def test_type_checking_imports_are_annotations_only():
    assert violations(PACKAGE / "nn/models.py",
                      "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..config import ModelConfig\n") == []


def test_the_readme_map_matches_the_tree():
    readme = (PACKAGE.parents[1] / "README.md").read_text(encoding="utf-8")
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if path.name != "__init__.py" or rel == "__init__.py":
            assert f"`{rel}`" in readme, f"README's map does not list {rel}"
