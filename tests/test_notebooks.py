"""The committed notebooks: clean (no outputs), shaped like chapters, and thin (logic lives in the
package). Running them is nbmake's job (pytest collects notebooks/ too; see notebooks/conftest.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from audiocls_utils.course import NOTEBOOKS

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
MAX_CODE_LINES = 12  # longer logic belongs in audiocls_utils, with a test


def _notebook(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)


def test_the_four_chapters_are_there_and_nothing_else() -> None:
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_without_outputs(name: str) -> None:
    notebook = _notebook(name)
    nbformat.validate(notebook)
    dirty = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"
             and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, f"{name}: cells {dirty} have outputs or execution counts; clear them " \
                      "(jupyter nbconvert --clear-output --inplace)"
    assert "widgets" not in notebook.metadata, f"{name}: saved widget state; clear it"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_reads_like_a_chapter(name: str) -> None:
    cells = _notebook(name).cells
    first = cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {name[:2]} ·")
    assert "What you will learn" in first.source and "**Time**" in first.source
    for profile in ("smoke", "cpu", "full"):
        assert f"`{profile}`" in first.source, f"{name}: the time for {profile} is missing"
    parameters = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1 and "AUDIOCLS_PROFILE" in parameters[0].source
    assert "setup_notebook(PROFILE, DATA, SEED)" in "".join(c.source for c in cells[:6])
    last = cells[-1].source
    assert "## Summary" in last and "## Exercises" in last
    exercises = re.findall(r"^\d\. ", last.split("## Exercises")[1], flags=re.MULTILINE)
    assert 2 <= len(exercises) <= 3
    assert any("headline(" in c.source for c in cells if c.cell_type == "code")


def _logic_lines(source: str) -> int:
    """Return how many lines of a code cell are statements other than imports."""
    return sum(node.end_lineno - node.lineno + 1 for node in ast.parse(source).body
               if not isinstance(node, ast.Import | ast.ImportFrom))


def test_logic_lines_skip_imports() -> None:
    assert _logic_lines("import os\nfrom a import (b,\n    c)\nx = 1\nif x:\n    y = 2\n") == 3


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_code_cells_stay_short(name: str) -> None:
    long_cells = [(i, _logic_lines(c.source)) for i, c in enumerate(_notebook(name).cells)
                  if c.cell_type == "code" and _logic_lines(c.source) > MAX_CODE_LINES]
    assert not long_cells, f"{name}: (cell, lines) {long_cells}: move the logic into the package"
