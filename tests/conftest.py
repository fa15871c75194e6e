"""Shared fixtures: small audio files written to tmp_path, and the real recordings in ../shared."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("SWANLAB_MODE", "disabled")  # tests never track unless they ask to
os.environ.setdefault("AUDIOCLS_OFFLINE", "1")  # and never reach for the network
os.environ.setdefault("MPLBACKEND", "Agg")
# The repo's scripts (make demo's notebook runner) are tested too; they live outside the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from helpers import FSDD, tone, write_wav  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def feature_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point the default feature cache at a folder of this test session, not ~/.cache."""
    folder = tmp_path_factory.mktemp("feature-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUDIOCLS_CACHE", str(folder))
        yield folder


@pytest.fixture
def tone_dataset(tmp_path: Path) -> Path:
    """Make root/<class>/<clip>.wav: three classes of noisy tones, 12 clips each, 1 s."""
    rng = np.random.default_rng(0)
    root = tmp_path / "tones"
    for label, frequency in (("low", 220.0), ("mid", 880.0), ("high", 3520.0)):
        for index in range(12):
            samples = tone(frequency * rng.uniform(0.9, 1.1), seconds=1.0)
            samples += rng.normal(0, 0.05, samples.shape).astype(np.float32)
            write_wav(root / label / f"{label}.{index:05d}.wav", samples)
    return root


@pytest.fixture
def fsdd() -> Path:
    """Return the real FSDD recordings folder, or skip when ../shared/data is absent."""
    if not FSDD.is_dir():
        pytest.skip(f"real recordings not found at {FSDD}")
    return FSDD


# Tests that need something a machine may lack carry a marker, and the run ends by saying how
# many of them ran: a skip is never silent.
NEEDS = {"shared_data": "real recordings in ../shared/data", "browser": "a headless Chromium"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that reads the real recordings (through the `fsdd` fixture)."""
    for item in items:
        if "fsdd" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared_data)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many of the tests that need real recordings or a browser ran, and how many skipped."""
    for marker, what in NEEDS.items():
        counts = {outcome: sum(marker in report.keywords for report in terminalreporter.stats.get(outcome, [])
                               if report.when == "call" or outcome == "skipped")
                  for outcome in ("passed", "failed", "skipped")}
        if any(counts.values()):
            terminalreporter.write_line(
                f"tests needing {what}: {counts['passed'] + counts['failed']} ran "
                f"({counts['failed']} failed), {counts['skipped']} skipped")
