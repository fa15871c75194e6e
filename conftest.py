"""Run the notebooks under pytest (nbmake): the chapters and their worked solutions
(notebooks/solutions/), each in the smoke profile, on built-in data, with no tracking, static
figures, and a fresh working folder per notebook (so none depends on another's files)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

NOTEBOOK_ENV = {
    "AUDIOCLS_PROFILE": "smoke",
    "AUDIOCLS_DATA": "synthetic",  # hermetic: never a GTZAN copy that happens to be in data/
    "AUDIOCLS_WIDGETS": "0",
    "SWANLAB_MODE": "disabled",
    "AUDIOCLS_OFFLINE": "1",
}
# Chapter 06 (and its solutions) teaches on real recordings: it reads the spoken digits in
# ../shared/data when they are there (no download), and falls back to the built-in set itself.
OWN_DATA = ("06_",)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Give a notebook's kernel the test environment while it runs, then restore ours."""
    if item.path.suffix != ".ipynb":
        yield
        return
    workdir = tempfile.mkdtemp(prefix=f"audiocls-{item.path.stem}-")
    env = {**NOTEBOOK_ENV, "AUDIOCLS_WORKDIR": workdir}
    if item.path.stem.startswith(OWN_DATA):
        env["AUDIOCLS_DATA"] = ""  # its own choice: the FSDD recordings where present, else built-in
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(workdir, ignore_errors=True)
