"""Packaging: pyproject.toml and environment.yml install the same set; CI runs `make test`."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]


def _normalize(requirement: str) -> str:
    name, rest = re.match(r"^([A-Za-z0-9_.\-]+(?:\[[^\]]+\])?)(.*)$", requirement.strip()).groups()
    return name.lower().replace("_", "-") + rest.replace(" ", "")


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


def test_environment_yml_installs_what_pyproject_declares() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    pip_items = _pip_section((REPO / "environment.yml").read_text())
    assert "-e ." in pip_items
    listed = [item for item in pip_items if item != "-e ."]
    assert sorted(map(_normalize, listed)) == sorted(map(_normalize, declared))


def test_torch_trio_is_pinned_together() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert {"torch==2.11.0", "torchvision==0.26.0", "torchaudio==2.11.0"} <= set(deps)


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
