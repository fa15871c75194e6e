"""Helpers shared by the tests: paths and small audio files (imported as `helpers`).

They live here rather than in conftest.py: `conftest` names more than one module in this repo.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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


BUNDLE_CLASSES = ["a", "b", "c"]


def untrained_bundle() -> dict[str, Any]:
    """Return a complete, untrained model bundle (3 classes, 32 px, 20-frame windows)."""
    from dataclasses import replace

    import torch

    from audiocls_utils.config import apply_profile, get_recipe
    from audiocls_utils.models import create_model
    from audiocls_utils.predict import model_bundle

    recipe = replace(apply_profile(get_recipe("baseline"), "smoke"), image_size=32)
    torch.manual_seed(0)
    model = create_model(recipe.model, len(BUNDLE_CLASSES), recipe.image_size, mean=-40.0,
                         std=12.0, pretrained="no")
    return model_bundle(model.eval(), recipe, BUNDLE_CLASSES, 20)


def tampered_bundle(bundle: dict[str, Any], change: str) -> dict[str, Any]:
    """Return a copy of `bundle` damaged as `change` says ("" leaves it whole)."""
    import torch

    bundle = {**bundle, "state_dict": dict(bundle["state_dict"])}
    state = bundle["state_dict"]
    if change == "class count":
        bundle["class_names"] = [*BUNDLE_CLASSES, "d"]
    elif change == "unknown model":
        bundle["model_name"] = "resnet1800"
    elif change == "absurd num_frames":
        bundle["num_frames"] = 10**9
    elif change == "std 0":
        bundle["std"] = 0.0
        state["0.std"] = torch.tensor(0.0)
    elif change == "std 0 in the weights only":
        state["0.std"] = torch.tensor(0.0)
    elif change == "missing key":
        del bundle["class_names"]
    elif change == "weights of another model":
        del state["1.layer1.0.conv1.weight"]
    elif change == "recipe not a table":
        bundle["recipe"] = "baseline"
    elif change == "hop of 0":
        bundle["recipe"] = {**bundle["recipe"], "feature": {**bundle["recipe"]["feature"],
                                                            "hop_length": 0}}
    elif change == "segment length not a number":
        bundle["recipe"] = {**bundle["recipe"], "segment_seconds": "long"}
    elif change == "f_min above f_max":
        bundle["recipe"] = {**bundle["recipe"], "feature": {**bundle["recipe"]["feature"],
                                                            "f_min": 20000.0}}
    elif change == "NaN":
        state["1.fc.bias"] = torch.full((len(BUNDLE_CLASSES),), float("nan"))
    return bundle
