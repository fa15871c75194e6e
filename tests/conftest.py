"""Shared fixtures: small audio files written to tmp_path, and the real recordings in ../shared."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("SWANLAB_MODE", "disabled")  # tests never track unless they ask to
os.environ.setdefault("AUDIOCLS_OFFLINE", "1")  # and never reach for the network
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AUDIOCLS_SHARED_DATA", REPO.parent / "shared" / "data"))
FSDD = SHARED_DATA / "fsdd" / "recordings"


def tone(frequency: float, seconds: float = 1.0, sample_rate: int = 22050,
         amplitude: float = 0.5) -> np.ndarray:
    """Return a float32 sine wave."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = 22050,
              subtype: str = "PCM_16") -> Path:
    """Write samples (samples,) or (samples, channels) to a wav file, making folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, sample_rate, subtype=subtype)
    return path


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
