"""A chapter survives "Run all" twice in one kernel, and each of its SwanLab cells run twice in a
row (the second run after the first's `swanlab.finish()` once raised `swanlab.log requires an
active Run`)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_ENV = {
    "AUDIOCLS_PROFILE": "smoke",
    "AUDIOCLS_DATA": "synthetic",
    "AUDIOCLS_WIDGETS": "0",
    "SWANLAB_MODE": "disabled",
    "AUDIOCLS_OFFLINE": "1",
}
CHAPTERS = ["04_advanced_resnext"]  # the chapters this test runs (each costs two smoke runs)


@pytest.mark.slow
@pytest.mark.parametrize("name", CHAPTERS)
def test_run_all_twice_then_each_swanlab_cell_again(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    for variable, value in {**NOTEBOOK_ENV, "AUDIOCLS_WORKDIR": str(tmp_path)}.items():
        monkeypatch.setenv(variable, value)  # the kernel inherits them
    path = REPO / "notebooks" / f"{name}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    code = [(i, cell) for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    with client.setup_kernel():
        for _ in range(2):  # Run all, twice: a CellExecutionError fails the test with the cell
            for index, cell in code:
                client.execute_cell(cell, index)
        for index, cell in code:  # then each SwanLab cell run twice in a row: the second run
            if "swanlab." in cell.source or "test_once(" in cell.source:  # comes after its finish()
                client.execute_cell(cell, index)
                client.execute_cell(cell, index)
