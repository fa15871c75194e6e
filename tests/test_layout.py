"""The package's layers, read from where each module sits, so a new module cannot slip past:

- the **core**: every module directly in audiocls_utils/ (what the chapters write and a learner
  reads), except the session below;
- the **engine**, split by job, one folder each, lowest first: audiocls_utils/engine/ itself
  (the built-in synthetic dataset), engine/experiment/ (running experiments: the cache, the
  runner, run folders, DDP, tracking, the reject threshold), engine/commands/ (the `audiocls`
  command line with download, export, the dashboard and the app; and `__main__`, its
  `python -m audiocls_utils` door);
- the **session**: audiocls_utils/course.py, the notebooks' session, the top layer.

Imports point down only (a module imports its own layer or the ones below), nothing imports the
session, inference never imports training, and there are no import cycles. A folder the list
does not rank fails the test until it is given a place."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "audiocls_utils"
SESSION = "course"
RANK = {"core": 0, "engine": 1, "engine.experiment": 2, "engine.commands": 3, "session": 4}


def layer(module: str) -> str:
    """Return the layer of a module: the folder it sits in (`core` for the package's own)."""
    if module == SESSION:
        return "session"
    if module == "__main__":
        return "engine.commands"
    parts = module.split(".")
    folder = parts if (PACKAGE / Path(*parts)).is_dir() else parts[:-1]
    return ".".join(folder) or "core"


def module_name(path: Path) -> str:
    """Return a module's dotted name inside the package, e.g. engine.experiment.cache."""
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
    assert {"engine.experiment.cache", "train"} <= graph["engine.experiment.runner"]
    assert "engine.experiment.runner" in graph["engine.commands.cli"]
    assert graph["models"] == {"errors"} and graph["devices"] == {"config", "errors"}


def test_layers_are_read_from_the_folders() -> None:
    graph = import_graph()
    assert layer("pretrained") == "core" and layer("course") == "session"
    assert layer("engine.synth") == "engine" and layer("engine.experiment.runner") == (
        "engine.experiment") and layer("engine.commands.cli") == layer("__main__") == (
        "engine.commands") and layer("engine.commands") == "engine.commands"
    unranked = {f"{m} ({layer(m)})" for m in graph if layer(m) not in RANK}
    assert not unranked, f"modules in a folder tests/test_layout.py does not rank: {unranked}"
    assert {"audio", "features", "data", "models", "train", "baseline", "pretrained"} <= {
        m for m in graph if layer(m) == "core"}


def test_no_module_imports_one_above_it_and_nothing_imports_the_session() -> None:
    graph = import_graph()
    for module, imported in graph.items():
        above = {i for i in imported if RANK[layer(i)] > RANK[layer(module)]}
        assert not above, f"{module} ({layer(module)}) imports {sorted(above)}, above it"
        assert SESSION not in imported, f"{module} imports the notebooks' session ({SESSION})"


def test_inference_never_imports_training() -> None:
    graph = import_graph()
    for module in ("predict", "engine.commands.export", "engine.commands.app"):
        seen, todo = set(), [module]
        while todo:  # everything `module` imports, directly or not
            for imported in graph[todo.pop()] - seen:
                seen.add(imported)
                todo.append(imported)
        assert not {"train", "engine.experiment.runner"} & seen, f"{module} reaches training code"


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


def test_the_command_line_starts_without_the_app_extra() -> None:
    """`audiocls` imports Gradio only for `audiocls app`: without the extra every other command runs."""
    code = ("import sys; import audiocls_utils.engine.commands.cli as cli; cli.build_parser(); "
            "assert 'gradio' not in sys.modules, 'gradio imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
