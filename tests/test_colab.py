"""The Colab path, simulated: a fresh environment that already has a PyTorch and ipywidgets 7.7.1
(as Colab ships) and no course. A chapter opened there installs the course with its first cell,
from a git URL (a local clone of this repo here), and runs, leaving that PyTorch and those
ipywidgets in place."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What the fresh environment must not see of this one: the course itself, the widgets it has
# (Colab's are older), and the tools venv brings of its own.
HIDDEN = ("audiocls", "__editable__", "ipywidgets", "widgetsnbextension", "jupyterlab_widgets",
          "pip", "_distutils_hack", "distutils-precedence.pth")


def _colab_like(root: Path) -> Path:
    """Make a venv that sees this environment's packages (PyTorch...) but not the course, with
    ipywidgets 7.7.1 of its own; return its python."""
    venv.create(root / "env", with_pip=True)
    python = root / "env" / "bin" / "python"
    own_site = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    base = root / "base"
    base.mkdir()
    for entry in Path(site.getsitepackages()[0]).iterdir():
        if not entry.name.startswith(HIDDEN):
            (base / entry.name).symlink_to(entry)
    Path(own_site, "colab_base.pth").write_text(f"{base}\n")  # after its own site-packages
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "ipywidgets==7.7.1"], check=True, capture_output=True, timeout=600)
    return python


def _versions(python: Path) -> str:
    """Return the environment's torch and ipywidgets versions, and where audiocls_utils is."""
    return subprocess.run([python, "-c", "import importlib.util, torch, ipywidgets; "
                           "spec = importlib.util.find_spec('audiocls_utils'); "
                           "print(torch.__version__, ipywidgets.__version__, spec and spec.origin)"],
                          capture_output=True, text=True, check=True,
                          cwd=python.parent).stdout.strip()  # not this checkout's folder


@pytest.mark.slow
def test_a_chapter_installs_the_course_on_colab_and_keeps_its_torch_and_widgets(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout of the course to clone from")
    python = _colab_like(tmp_path)
    torch_version, widgets_version, course = _versions(python).split()
    assert widgets_version == "7.7.1" and course == "None"  # Colab's state: no course yet
    content = tmp_path / "content"  # Colab's working folder
    content.mkdir()
    shutil.copy(REPO / "notebooks" / "01_dataset_exploration.ipynb", content)
    env = {**os.environ, "AUDIOCLS_REPO": REPO.as_uri(), "AUDIOCLS_PROFILE": "smoke",
           "AUDIOCLS_DATA": "synthetic", "AUDIOCLS_WORKDIR": str(tmp_path / "work"),
           "SWANLAB_MODE": "disabled", "AUDIOCLS_OFFLINE": "1", "AUDIOCLS_WIDGETS": "0"}
    run = ("import nbformat; from nbclient import NotebookClient; "
           "nb = nbformat.read('01_dataset_exploration.ipynb', as_version=4); "
           "NotebookClient(nb, timeout=600, kernel_name='python3', "
           "resources={'metadata': {'path': '.'}}).execute()")
    result = subprocess.run([python, "-c", run], cwd=content, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (content / "audiocls" / "pyproject.toml").is_file()  # the first cell cloned the course
    after = _versions(python).split()
    assert after[:2] == [torch_version, "7.7.1"]  # the install kept Colab's PyTorch and widgets
    assert after[2].startswith(str(content / "audiocls"))  # and the course is the clone
