"""The package's shape: no import cycles, imports flow one way, registries agree with settings."""

from __future__ import annotations

import ast
import subprocess
import sys
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
                found.add(
                    sub
                    if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists()
                    or (PACKAGE.parent / sub.replace(".", "/")).is_dir()
                    else target
                )
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
                cycle = stack[stack.index(nxt) :] + [nxt]
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
    found = [p for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()]
    names = {p.stem if p.is_file() else p.name for p in found}
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


# each job's entry point, exported from the package (issue 23)
ENTRY_POINTS = ("dream", "dream_audio", "dream_video", "dream_zoom", "layer_sweep", "channel_atlas", "fit")


def test_public_surface_is_the_jobs_entry_points_and_all_of_it_is_in_all():
    public = {name for name in vars(deepdream) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(deepdream, name)) is type(ast)}  # subpackages
    assert set(deepdream.__all__) == public - modules, "deepdream.__all__ differs from what the package defines"
    for name in ENTRY_POINTS:
        assert name in deepdream.__all__ and callable(getattr(deepdream, name)), name
    assert "resolve_device" not in deepdream.__all__  # plumbing stays in deepdream.runtime


def test_importing_deepdream_stays_cheap():
    """No web, cluster or language-model library is loaded by `import deepdream`: only where it is used."""
    heavy = ("gradio", "ray", "transformers")
    code = f"import sys, deepdream; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


def exception_classes() -> dict[str, str]:
    """Every class in the package that derives from an exception (by its bases' names), with its module."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in getattr(node, "bases", [])}
            if isinstance(node, ast.ClassDef) and any(b.endswith(("Error", "Exception", "Unavailable")) for b in bases):
                found[node.name] = module_name(path)
    return found


def test_every_exception_type_lives_in_errors():
    """Every error a caller can meet; a private one (`_Done`, control flow inside one module) stays there."""
    found = exception_classes().items()
    elsewhere = {name: module for name, module in found if module != "deepdream.errors" and not name.startswith("_")}
    assert not elsewhere, f"exception types outside deepdream/errors.py: {elsewhere}"


def registries(path: Path) -> list[str]:
    """The module-level registries a file defines: UPPER_CASE names bound to a dict."""
    names = []
    for node in ast.parse(path.read_text()).body:
        target, value = None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            target, value = node.target.id, node.value
        if target and target.isupper() and isinstance(value, (ast.Dict, ast.DictComp)):
            names.append(target)
    return names


def test_one_meaning_per_name():
    """A registry name is defined in one module only (two OPTIMIZERS, step rules and torch optimisers, cost
    every reader a detour), and no module is named after a top-level package (training/engine.py)."""
    where: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for name in registries(path):
            where.setdefault(name, set()).add(module_name(path))
    twice = {name: sorted(modules) for name, modules in where.items() if len(modules) > 1}
    assert not twice, f"registries of one name in several modules: {twice}"
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    # cli/ is the exception by design: one module per command group, named after the job it fronts
    inner = [p for p in PACKAGE.rglob("*.py") if p.parent not in (PACKAGE, PACKAGE / "cli")]
    shadows = [str(p.relative_to(PACKAGE)) for p in inner if p.stem in packages]
    assert not shadows, f"modules named after a top-level package: {shadows}"
