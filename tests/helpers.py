"""Helpers shared by the tests: paths and small audio files (imported as `helpers`).

They live here rather than in conftest.py: `conftest` names more than one module in this repo.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

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


def stub_gpu(monkeypatch, name: str, total_gib: float, major: int, count: int = 1) -> None:  # noqa: ANN001
    """Make torch report `count` CUDA GPU(s) named `name` with `total_gib` GiB and compute `major`.x."""
    from types import SimpleNamespace

    import torch

    properties = SimpleNamespace(name=name, total_memory=int(total_gib * 2**30), major=major, minor=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: properties)
