"""The one-direction data path of DESIGN.md, as a test.

Every import in ``physml/**`` — module level or inside a function (lazy) — is mapped to
the layers below, and an edge from a lower layer to a higher one fails. Within a rank,
packages may import each other (models ↔ objectives share a rank, but see below).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "physml"

#: Import rank of each top-level part of physml: a module may import only its own or
#: lower ranks. The spec text is parsed only by the experiment layer and the CLI — nothing
#: downstream of the parse (simulation, data, models, training, reporting) reaches back
#: into it, so ``lang`` sits just under ``experiment``.
RANKS = {
    "errors": 0,
    "symbolic": 1,
    "solve": 2,
    "data": 3,
    "simulation": 4,
    "models": 5,
    "objectives": 6,
    "training": 7,
    # Discovery fits trained models' augmentations and writes specs (symbolic's printer);
    # identifiability and uncertainty simulate, build models and retrain (bootstrap), and
    # the reports show their intervals: between training and reporting.
    "discover": 7.5,
    "reporting": 8,
    "lang": 9,
    "experiment": 11,
    "cli": 12,
    "__main__": 13,
    "__init__": 13,
    "_version": 0,
    "limits": 0,
    "storage": 0,
    "equations": 0,
}


def _part(module: str) -> str:
    parts = module.split(".")
    assert parts[0] == "physml", module
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every physml import in a file, lazy ones included."""
    rel = path.relative_to(ROOT.parent).with_suffix("")
    package = list(rel.parts[:-1])  # the package a relative import starts from
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("physml")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # from . import x, y
                    out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
                    continue
            else:
                mod = node.module or ""
            if mod.startswith("physml"):
                out.append((node.lineno, mod))
    return out


def _edges():
    for path in sorted(ROOT.rglob("*.py")):
        src = "physml." + ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for line, target in _imports(path):
            yield path, line, src, target


def test_every_part_of_physml_has_a_layer():
    parts = {p.name if p.is_dir() else p.stem for p in ROOT.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    assert parts <= set(RANKS), sorted(parts - set(RANKS))


def test_imports_follow_the_data_path():
    bad = []
    for path, line, src, target in _edges():
        a, b = _part(src), _part(target)
        if RANKS[b] > RANKS[a]:
            bad.append(f"{path.relative_to(ROOT.parent)}:{line}: {src} imports {target} "
                       f"({a} → {b} goes against the data path)")
    assert not bad, "\n".join(bad)


def test_the_edge_check_can_fail(tmp_path):
    """The walker sees lazy imports inside functions (the check is not vacuous)."""
    f = ROOT / "training" / "trainer.py"
    found = [t for _, _, s, t in _edges() if s == "physml.training.trainer"]
    assert "physml.objectives" in found
    code = "def f():\n    from ..experiment import build\n"
    p = tmp_path / "x.py"
    p.write_text(code)
    tree = ast.parse(code)
    lazy = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert lazy and lazy[0].level == 2 and f.exists()


@pytest.mark.parametrize("name", ["simulation", "training", "reporting", "experiment", "solve"])
def test_subpackages_are_not_shadowed(name):
    import importlib

    import physml

    mod = importlib.import_module(f"physml.{name}")
    assert getattr(physml, name) is mod
