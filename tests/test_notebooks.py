"""The committed notebooks: clean (no outputs), shaped like chapters, and one source with the
package: every definition a chapter marks `#@save` is, text for text, the one in `audiocls_utils`;
every chapter's exercises have a worked solution in notebooks/solutions/, one section each.
Running them is nbmake's job (pytest collects notebooks/ too; see the root conftest.py)."""

from __future__ import annotations

import ast
import difflib
import re
import sys
from pathlib import Path

import nbformat
import pytest
from run_notebooks import NOTEBOOKS  # scripts/ (tests/conftest.py puts it on the path)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
PACKAGE = REPO / "audiocls_utils"
SAVE_MARK = re.compile(r"#@save\b")


SOLUTIONS = tuple(f"solutions/{name}_solutions" for name in NOTEBOOKS)


def _notebook(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)


def _exercise_numbers(chapter: str) -> list[int]:
    """Return the numbers of the exercises listed under a chapter's `## Exercises` heading."""
    source = "".join(c.source for c in _notebook(chapter).cells if c.cell_type == "markdown")
    assert source.count("## Exercises") == 1, f"{chapter}: one `## Exercises` section"
    return [int(n) for n in re.findall(r"^(\d+)\. ", source.split("## Exercises")[1], re.M)]


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


def _assert_parameters_then_setup(cells: list) -> None:
    """Check one tagged parameters cell reading AUDIOCLS_PROFILE, and setup_notebook near the top."""
    parameters = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1
    assert "AUDIOCLS_PROFILE" in parameters[0].source and "AUDIOCLS_DEVICE" in parameters[0].source
    assert "setup_notebook(PROFILE, DATA, SEED, DEVICE)" in "".join(c.source for c in cells[:6])


def test_the_four_chapters_are_there_and_nothing_else() -> None:
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS + SOLUTIONS)
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
    _assert_parameters_then_setup(cells)
    assert any("headline(" in c.source for c in cells if c.cell_type == "code"), \
        "make demo reports each chapter's headline line"


def test_exercises_are_read_from_the_numbered_list() -> None:
    assert _exercise_numbers("03_baseline_resnet18") == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("chapter", NOTEBOOKS)
def test_every_exercise_has_a_worked_solution_section(chapter: str) -> None:
    path = NOTEBOOK_DIR / f"solutions/{chapter}_solutions.ipynb"
    assert path.is_file(), f"{chapter}'s exercises have no solutions notebook at {path}"
    cells = nbformat.read(path, as_version=4).cells
    sections = [int(n) for c in cells if c.cell_type == "markdown"
                for n in re.findall(r"^## Exercise (\d+)\b", c.source, re.M)]
    assert sections == _exercise_numbers(chapter), \
        f"{path.name}: sections {sections}, one per exercise of {chapter} expected"


@pytest.mark.parametrize("name", SOLUTIONS)
def test_solutions_run_like_the_chapters(name: str) -> None:
    cells = _notebook(name).cells
    _assert_parameters_then_setup(cells)


def _install_cell(name: str) -> str:
    [cell] = [c for c in _notebook(name).cells if c.cell_type == "code" and "COURSE_REPO" in c.source]
    return cell.source


@pytest.mark.parametrize("name", NOTEBOOKS + SOLUTIONS)
def test_every_notebook_opens_with_the_same_colab_install_cell(name: str) -> None:
    cells = _notebook(name).cells
    first_code = next(c for c in cells if c.cell_type == "code")
    assert "COURSE_REPO" in first_code.source, f"{name}: the install cell must run first"
    assert _install_cell(name) == _install_cell(NOTEBOOKS[0])


def _run_install_cell(monkeypatch: pytest.MonkeyPatch, folder: Path, repo: str | None = "",
                      installed: bool = False) -> list[list[str]]:
    """Execute the install cell in `folder` with find_spec and subprocess stubbed; return the commands."""
    import importlib.util
    import subprocess
    import sys

    commands: list[list[str]] = []

    def run(command: list[str], check: bool) -> None:
        commands.append(command)
        if command[:2] == ["git", "clone"]:
            (folder / command[-1] / "notebooks").mkdir(parents=True)
            (folder / command[-1] / "pyproject.toml").write_text("")

    monkeypatch.chdir(folder)
    if repo is None:  # unset: the URL written into the cell applies
        monkeypatch.delenv("AUDIOCLS_REPO", raising=False)
    else:
        monkeypatch.setenv("AUDIOCLS_REPO", repo)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if installed else None)
    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(sys, "path", list(sys.path))
    exec(_install_cell(NOTEBOOKS[0]), {})  # noqa: S102 - the notebook's own cell
    return commands


def test_install_cell_does_nothing_where_the_course_is_installed(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert _run_install_cell(monkeypatch, tmp_path, installed=True) == []


def test_install_cell_installs_the_clone_it_sits_in_without_touching_torch(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "notebooks").mkdir()
    [command] = _run_install_cell(monkeypatch, tmp_path / "notebooks")
    assert command[1:] == ["-m", "pip", "install", "-q", "-e", ".."]
    assert not any("torch" in part for part in command)
    assert str(tmp_path) in sys.path


def test_install_cell_clones_the_course_on_colab_or_says_what_to_set(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="set COURSE_REPO"):
        _run_install_cell(monkeypatch, tmp_path)
    clone, install = _run_install_cell(monkeypatch, tmp_path, repo="https://example.org/c.git")
    assert clone == ["git", "clone", "--depth", "1", "https://example.org/c.git", "audiocls"]
    assert install[-2:] == ["-e", ".."] and Path.cwd() == tmp_path / "audiocls" / "notebooks"


def test_one_command_gives_every_notebook_the_course_url(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from set_course_repo import set_course_repo

    shutil.copytree(NOTEBOOK_DIR, tmp_path / "notebooks")
    changed = set_course_repo("https://example.org/you/audiocls.git", tmp_path / "notebooks")
    assert len(changed) == len(NOTEBOOKS) + len(SOLUTIONS)
    for path in changed:
        cell = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        assert 'os.environ.get("AUDIOCLS_REPO", "https://example.org/you/audiocls.git")' in cell.source
    # The install cell then clones that URL with no environment variable and no edit.
    folder = tmp_path / "colab"
    folder.mkdir()
    monkeypatch.setattr(sys.modules[__name__], "NOTEBOOK_DIR", tmp_path / "notebooks")
    [clone, _] = _run_install_cell(monkeypatch, folder, repo=None)
    assert clone[-2:] == ["https://example.org/you/audiocls.git", "audiocls"]
    with pytest.raises(SystemExit, match="not a git URL"):
        set_course_repo('x" ; rm -rf /', tmp_path / "notebooks")
