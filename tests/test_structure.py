"""The package's shape: no import cycles, imports flow one way, registries agree with settings."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import deepdream
from deepdream.engine.ascent import OPTIMIZERS
from deepdream.settings import OPTIMIZER_CHOICES

PACKAGE = Path(deepdream.__file__).parent

# lower layers never import higher ones (front ends -> jobs -> engine -> models -> runtime/settings/errors)
LAYERS = {
    "errors": 0,
    "hints": 0,
    "settings": 1,
    "imagefiles": 1,
    "runtime": 1,
    "locks": 1,
    "models": 2,
    "engine": 3,
    "featurevis": 4,
    "still": 5,
    "explore": 5,
    "video": 5,
    "audio": 5,
    "training": 5,
    "text": 5,
    "batch": 6,
    "studio": 7,
    "cli": 7,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every deepdream module the file imports, at any depth (function-level imports count too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("deepdream")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("deepdream"):
                continue
            # `from . import x` may name a submodule
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists()
                          or (PACKAGE.parent / sub.replace(".", "/")).is_dir() else target)
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            # a package's __init__ importing its own submodules is how packages work, not a cycle
            if node == nxt.rsplit(".", 1)[0]:
                continue
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_imports_flow_downwards():
    wrong = []
    for name, targets in graph().items():
        here = layer_of(name)
        for target in targets:
            there = layer_of(target)
            if here is not None and there is not None and there > here:
                wrong.append(f"{name} -> {target}")
    assert not wrong, "imports against the layering: " + ", ".join(sorted(wrong))


def test_every_top_level_module_has_a_layer():
    names = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert names - {"__init__", "__main__"} <= set(LAYERS)


def test_checkpoint_dreams_do_not_import_the_trainer():
    """Loading a backbone (from a checkpoint too) reaches nothing in deepdream.training."""
    seen, todo = set(), ["deepdream.models.load", "deepdream.still"]
    edges = graph()
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(edges[m])
    assert not [m for m in seen if m.startswith("deepdream.training")]


def test_optimizer_names_match_the_engine():
    assert tuple(OPTIMIZERS) == OPTIMIZER_CHOICES


def test_public_api_exports_the_engine_values():
    for name in ("Dreamer", "Energy", "Channels", "ClassLogProb", "Guide", "dream", "Settings", "load_backbone"):
        assert hasattr(deepdream, name), name
    assert callable(deepdream.dream)
