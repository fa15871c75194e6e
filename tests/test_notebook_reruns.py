"""A chapter survives the re-running a learner does: each cell run again at once (a SwanLab cell
after it finished the run, a results table after its rows exist), then "Run all" a second time
in the same kernel."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["03_baseline_resnet18", "04_advanced_resnext",
                                  "05_baselines_and_pretrained", "06_your_own_sounds"])
def test_cells_run_again_and_run_all_twice_in_one_kernel(name: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    for variable, value in {"AUDIOCLS_PROFILE": "smoke", "AUDIOCLS_DATA": "synthetic",
                            "AUDIOCLS_WIDGETS": "0", "SWANLAB_MODE": "disabled",
                            "AUDIOCLS_OFFLINE": "1", "AUDIOCLS_WORKDIR": str(tmp_path)}.items():
        monkeypatch.setenv(variable, value)  # the kernel inherits them
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    with client.setup_kernel():  # a failing cell raises CellExecutionError, naming it
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
            client.execute_cell(cell, index)  # the same cell again, at once
        for index, cell in enumerate(notebook.cells):  # Run all, a second time
            client.execute_cell(cell, index)
    headlines = [output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
                 if "Headline:" in output.get("text", "")]
    assert len(headlines) == 1  # the second pass's (outputs are replaced, not appended)
