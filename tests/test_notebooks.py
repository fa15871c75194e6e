"""The committed notebooks: clean (no outputs), shaped like chapters, and one source with the
package: every definition a chapter marks `#@save` is, text for text, the one in `audiocls_utils`.
Running them is nbmake's job (pytest collects notebooks/ too; see the root conftest.py)."""

from __future__ import annotations

import ast
import difflib
import re
from pathlib import Path

import nbformat
import pytest

from audiocls_utils.engine.notebooks import NOTEBOOKS

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
PACKAGE = REPO / "audiocls_utils"
SAVE_MARK = re.compile(r"#@save\b")


def _notebook(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)


def _definitions(source: str) -> dict[str, tuple[str, bool]]:
    """Return {name: (text from the first decorator to the last line, marked #@save)} for the
    top-level functions and classes of `source`."""
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            header = "\n".join(lines[node.lineno - 1 : (node.body[0].lineno - 1)])
            found[node.name] = ("\n".join(lines[start - 1 : node.end_lineno]),
                                bool(SAVE_MARK.search(header)))
    return found


def saved_in_notebooks() -> dict[str, tuple[str, str]]:
    """Return {name: (chapter, text)} for every definition a chapter marks #@save."""
    saved: dict[str, tuple[str, str]] = {}
    for name in NOTEBOOKS:
        for cell in _notebook(name).cells:
            if cell.cell_type == "code" and SAVE_MARK.search(cell.source):
                for definition, (text, marked) in _definitions(cell.source).items():
                    if marked:
                        assert definition not in saved, f"{definition} is saved by two chapters"
                        saved[definition] = (name, text)
    return saved


def saved_in_package() -> dict[str, tuple[Path, str]]:
    """Return {name: (module, text)} for every package definition marked #@save."""
    saved: dict[str, tuple[Path, str]] = {}
    for module in sorted(PACKAGE.rglob("*.py")):
        for definition, (text, marked) in _definitions(module.read_text()).items():
            if marked:
                assert definition not in saved, f"{definition} is marked #@save in two modules"
                saved[definition] = (module, text)
    return saved


def test_definitions_are_read_with_decorators_and_the_mark() -> None:
    source = "import torch\n\n\n@torch.no_grad()\ndef f(x):  #@save\n    return x\n\n\ndef g():\n    pass\n"
    assert _definitions(source) == {
        "f": ("@torch.no_grad()\ndef f(x):  #@save\n    return x", True),
        "g": ("def g():\n    pass", False),
    }


def test_every_saved_definition_is_the_package_code_word_for_word() -> None:
    notebooks, package = saved_in_notebooks(), saved_in_package()
    assert set(notebooks) == set(package), (
        f"marked #@save only in a chapter: {sorted(set(notebooks) - set(package))}; "
        f"only in the package: {sorted(set(package) - set(notebooks))}")
    for definition, (chapter, text) in notebooks.items():
        module, package_text = package[definition]
        if text != package_text:
            diff = "\n".join(difflib.unified_diff(
                package_text.splitlines(), text.splitlines(), str(module.relative_to(REPO)),
                f"notebooks/{chapter}.ipynb", lineterm=""))
            pytest.fail(f"{definition} differs between the chapter and the package:\n{diff}")


def test_chapters_03_and_04_write_the_classifier_in_cells() -> None:
    saved = saved_in_notebooks()
    chapter_03 = {"SegmentDataset", "split_loaders", "LogMelToImage", "create_model",
                  "train_one_epoch", "predict_clips", "evaluate", "fit"}
    assert chapter_03 <= {n for n, (chapter, _) in saved.items() if chapter.startswith("03")}
    assert "make_scheduler" in {n for n, (chapter, _) in saved.items() if chapter.startswith("04")}
    source_03 = "".join(c.source for c in _notebook("03_baseline_resnet18").cells)
    for piece in ("swanlab.init(", "swanlab.log(", "nn.CrossEntropyLoss(", "torch.optim.Adam(",
                  ".backward()", ".fc = nn.Linear(", "DataLoader(", "(Dataset)"):
        assert piece in source_03, f"chapter 03 no longer shows {piece}"


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
def test_notebook_has_a_parameters_cell_that_make_demo_and_nbmake_can_set(name: str) -> None:
    cells = _notebook(name).cells
    parameters = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1 and "AUDIOCLS_PROFILE" in parameters[0].source
    assert "setup_notebook(PROFILE, DATA, SEED)" in "".join(c.source for c in cells[:6])
    assert any("headline(" in c.source for c in cells if c.cell_type == "code"), \
        "make demo reports each chapter's headline line"
