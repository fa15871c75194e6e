"""Packaging: what pyproject.toml declares, what the Makefile and environment.yml install, and
that installing into an environment with a consistent torch trio keeps that trio."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
TRIO = ("torch", "torchvision", "torchaudio")
TOOLS = ("pytest", "nbmake", "ruff", "onnx", "onnxscript", "onnxruntime", "jupyterlab", "nbconvert")


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.match(r"^[A-Za-z0-9_.\-]+", requirement.strip()).group(0).lower().replace("_", "-")


def _normalize(requirement: str) -> str:
    name, rest = re.match(r"^([A-Za-z0-9_.\-]+(?:\[[^\]]+\])?)(.*)$", requirement.strip()).groups()
    return name.lower().replace("_", "-") + rest.replace(" ", "")


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.strip()] = version.strip()
    return pins


def _pip_section(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    items = []
    for line in lines[start + 1:]:
        match = re.match(r"^\s+- (.+)$", line)
        if not match:
            break
        items.append(match.group(1).strip())
    return items


def test_runtime_dependencies_hold_no_test_lint_or_export_tools() -> None:
    runtime = {_name(r) for r in _project()["dependencies"]}
    assert runtime.isdisjoint(TOOLS), runtime & set(TOOLS)
    extras = _project()["optional-dependencies"]
    everything = {_name(r) for name in ("lab", "export", "test", "lint") for r in extras[name]}
    assert set(TOOLS) <= everything
    assert extras["dev"] == ["audiocls_utils[lab,export,test,lint,app]"]
    assert "gradio" not in runtime and [_name(r) for r in extras["app"]] == ["gradio"]


def test_torch_trio_is_a_range_and_the_constraints_pin_a_release_inside_it() -> None:
    deps = {_name(r): r for r in _project()["dependencies"]}
    pins = _constraints()
    assert sorted(pins) == sorted(TRIO)
    for name in TRIO:
        assert "==" not in deps[name], f"{deps[name]}: pin versions in constraints.txt, not here"
        lower = re.search(r">=([\d.]+)", deps[name]).group(1)
        as_tuple = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
        assert as_tuple(pins[name]) >= as_tuple(lower)
    assert "-c constraints.txt" in (REPO / "Makefile").read_text()


def test_environment_yml_installs_what_pyproject_declares_with_the_tested_trio() -> None:
    project = _project()
    extras = project["optional-dependencies"]
    pins = _constraints()
    declared = [f"{_name(r)}=={pins[_name(r)]}" if _name(r) in pins else r
                for r in project["dependencies"]]
    declared += [r for name in ("lab", "export", "test", "lint", "app") for r in extras[name]]
    pip_items = _pip_section((REPO / "environment.yml").read_text())
    assert "-e ." in pip_items
    listed = [item for item in pip_items if item != "-e ."]
    assert sorted(map(_normalize, listed)) == sorted(map(_normalize, declared))


@pytest.mark.slow
def test_installing_the_package_keeps_an_installed_consistent_trio(tmp_path: Path) -> None:
    """Resolve pyproject's dependencies offline against this environment: pip must want nothing.

    This environment holds the tested trio; a pin to another release would make pip look for it
    (and fail, offline), which is what replaced Colab's torch before.
    """
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--quiet",
         "--report", str(report), *_project()["dependencies"]],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    wanted = sorted(item["metadata"]["name"] for item in json.loads(report.read_text())["install"])
    assert wanted == [], f"pip would install {wanted} into an environment that has the trio"


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme


def test_colab_keeps_its_ipywidgets_and_torch() -> None:
    """Colab ships ipywidgets 7.7.1 and its own torch: the declared ranges must accept them, or the
    chapters' install cell would replace them inside a live runtime (its widgets then break)."""
    from packaging.requirements import Requirement

    declared = {Requirement(r).name.lower(): Requirement(r).specifier for r in _project()["dependencies"]}
    assert declared["ipywidgets"].contains("7.7.1")
    assert declared["torch"].contains("2.6.0") and declared["torch"].contains("2.11.0")


def test_the_app_extra_requires_no_torch_and_no_ipywidgets() -> None:
    """Installing the app extra on Colab must not replace its torch or its ipywidgets 7.7.1: Gradio
    (as installed here, the release the app was tested with) requires neither."""
    from importlib import metadata

    from packaging.requirements import Requirement

    try:
        requirements = metadata.requires("gradio") or []
    except metadata.PackageNotFoundError:
        pytest.skip("gradio is not installed (the app extra)")
    names = {Requirement(r).name.lower() for r in requirements
             if not Requirement(r).marker or "extra" not in str(Requirement(r).marker)}
    assert names.isdisjoint({"torch", "torchvision", "torchaudio", "ipywidgets"}), names


def test_the_built_package_ships_every_module_of_the_source_tree(tmp_path: Path) -> None:
    """A `pip install` that is not editable (Colab, a wheel) gets every module, subpackages too."""
    build = tmp_path / "lib"
    script = f"from setuptools import setup; setup(script_args=['-q', 'build_py', '-d', {str(build)!r}])"
    built = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO, check=True, capture_output=True, text=True)
    # setuptools still copies an unlisted subpackage "as data", with a warning that it will stop.
    assert "Package would be ignored" not in built.stderr, built.stderr
    source = {p.relative_to(REPO).as_posix() for p in (REPO / "audiocls_utils").rglob("*.py")}
    shipped = {p.relative_to(build).as_posix() for p in build.rglob("*.py")}
    assert source - shipped == set(), f"a built install would miss {sorted(source - shipped)}"
