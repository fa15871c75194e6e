"""The package's two layers: the core a learner reads never imports the engine, inference never
imports training, and no module imports itself back through others (no cycles)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "audiocls_utils"
CORE = {"audio", "augment", "baseline", "config", "data", "errors", "features", "files", "gtzan", "metrics",
        "models", "plots", "predict", "pretrained", "train"}


def module_name(path: Path) -> str:
    """Return a module's dotted name inside the package, e.g. engine.cache."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports(path: Path) -> set[str]:
    """Return the package modules `path` imports (relative imports resolved, lazy ones included)."""
    name = module_name(path)
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            target = ".".join([*base, node.module] if node.module else base)
            for alias in node.names:  # `from . import x` may name a module
                candidate = f"{target}.{alias.name}".strip(".")
                found.add(candidate if (PACKAGE / Path(*candidate.split("."))).with_suffix(".py")
                          .exists() else target)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("audiocls_utils"):
            found.add(node.module.removeprefix("audiocls_utils").strip("."))
    return {f for f in found if f} - {name}


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): package_imports(p) for p in PACKAGE.rglob("*.py")}


def test_imports_are_resolved_against_the_package() -> None:
    graph = import_graph()
    assert "engine.cache" in graph["engine.runner"] and "train" in graph["engine.runner"]
    assert graph["models"] == {"config", "errors"}  # machine_profile asks config which profile fits


def test_the_core_never_imports_the_engine_or_the_notebook_session() -> None:
    graph = import_graph()
    assert CORE <= set(graph), f"core modules missing: {CORE - set(graph)}"
    for module in CORE:
        outside = {i for i in graph[module] if i.split(".")[0] not in CORE}
        assert not outside, f"core module {module} imports {sorted(outside)}"


def test_inference_never_imports_training() -> None:
    graph = import_graph()
    for module in ("predict", "engine.export"):
        seen, todo = set(), [module]
        while todo:  # everything `module` imports, directly or not
            for imported in graph[todo.pop()] - seen:
                seen.add(imported)
                todo.append(imported)
        assert not {"train", "engine.runner"} & seen, f"{module} reaches training code"


def test_no_import_cycles() -> None:
    graph = import_graph()
    for start in graph:
        todo, seen = list(graph[start]), set()
        while todo:
            module = todo.pop()
            assert module != start, f"{start} imports itself back through {sorted(seen)}"
            if module not in seen:
                seen.add(module)
                todo.extend(graph.get(module, ()))
