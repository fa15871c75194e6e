"""Predict: clip-level probabilities (windows averaged), and labels for new files with a saved model.

`predict_clips` is written in chapter 03; `Predictor` loads what `audiocls train` saved and is
what `audiocls predict` runs. Nothing here imports training code.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from .audio import load_audio
from .config import Recipe
from .data import SegmentDataset
from .errors import AudioclsError
from .features import LogMel
from .files import load_torch
from .models import create_model, pick_device

MODEL_FORMAT = "audiocls-model/2"  # /2: the model takes log-Mels (standardization inside it)
REQUIRED_KEYS = {"format", "model_name", "state_dict", "class_names", "recipe", "num_frames",
                 "mean", "std"}


@torch.no_grad()
def predict_clips(model, loader, device, amp=False):  #@save
    """Return each clip's class probabilities, (clips, classes): the mean softmax of its windows."""
    model.eval()
    num_clips = len(loader.dataset.log_mels)
    sums, counts = None, torch.zeros(num_clips)
    for segments, _, clips in loader:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(segments.to(device))  # (batch, classes)
        probabilities = logits.float().softmax(dim=1).cpu()
        if sums is None:
            sums = torch.zeros(num_clips, probabilities.shape[1])
        sums.index_add_(0, clips, probabilities)  # add each window's vote to its clip's row
        counts.index_add_(0, clips, torch.ones(len(clips)))
    assert (counts > 0).all(), "every clip needs at least one window"
    return sums / counts.unsqueeze(1)


def load_bundle(path: str | Path) -> dict[str, Any]:
    """Load a model file safely (tensors and plain types only) and check what it holds."""
    path = Path(path)
    if not path.is_file():
        raise AudioclsError(f"Model file {path} not found; train one with `audiocls train`")
    try:
        bundle = load_torch(path)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise AudioclsError(
            f"{path}: not a readable audiocls model ({type(error).__name__}: {first_line[:200]}). "
            "Only files written by `audiocls train` load; nothing from the file was executed."
        ) from None
    if isinstance(bundle, dict) and bundle.get("format") == "audiocls-model/1":
        raise AudioclsError(f"{path}: a model file of an older audiocls (format 1); train it "
                            "again with this version")
    if not isinstance(bundle, dict) or bundle.get("format") != MODEL_FORMAT:
        raise AudioclsError(f"{path}: not an audiocls model file (expected format {MODEL_FORMAT})")
    missing = REQUIRED_KEYS - set(bundle)
    if missing:
        raise AudioclsError(f"{path}: model file lacks {sorted(missing)}; retrain it")
    return bundle


def model_bundle(model: torch.nn.Module, recipe: Recipe, class_names: Sequence[str],
                 num_frames: int) -> dict[str, Any]:
    """Return everything `Predictor` needs, as tensors and plain Python types (weights_only-safe)."""
    image = model[0]  # LogMelToImage: the training set's statistics travel inside the model
    return {
        "format": MODEL_FORMAT,
        "model_name": recipe.model,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "class_names": list(class_names),
        "feature_config": recipe.feature.to_dict(),
        "recipe": recipe.to_dict(),
        "num_frames": int(num_frames),
        "mean": float(image.mean),
        "std": float(image.std),
    }


class Predictor:
    """Hold a trained model with its features and class list, ready to label files."""

    def __init__(self, bundle: dict[str, Any], device: str | torch.device | None = None) -> None:
        self.device = pick_device(str(device) if device else None)
        self.recipe = Recipe.from_dict(bundle["recipe"])
        self.class_names: list[str] = list(bundle["class_names"])
        self.num_frames = int(bundle["num_frames"])
        self.model = create_model(bundle["model_name"], len(self.class_names),
                                  self.recipe.image_size, pretrained="no")
        self.model.load_state_dict(bundle["state_dict"])  # mean and std included
        self.model.to(self.device).eval()
        self.log_mel = LogMel(self.recipe.feature)

    @classmethod
    def from_file(cls, path: str | Path, device: str | torch.device | None = None) -> Predictor:
        """Load a model file written by `audiocls train`."""
        return cls(load_bundle(path), device)

    def probabilities(self, paths: Sequence[str | Path]) -> torch.Tensor:
        """Return (files, classes) probabilities, averaged over each file's windows."""
        with torch.inference_mode():
            features = [self.log_mel(load_audio(p, self.recipe.feature.sample_rate)) for p in paths]
        hop = max(1, int(self.num_frames * self.recipe.eval_hop_fraction))
        windows = SegmentDataset(features, [0] * len(features), self.num_frames, train=False,
                                 hop_frames=hop)
        loader = DataLoader(windows, batch_size=self.recipe.batch_size)
        return predict_clips(self.model, loader, self.device)

    def predict(self, paths: Sequence[str | Path], top_k: int = 3) -> list[dict[str, Any]]:
        """Return, for each file, its `top_k` labels with probabilities, most likely first."""
        if not paths:
            return []
        top_k = max(1, min(top_k, len(self.class_names)))
        values, indices = self.probabilities(paths).topk(top_k, dim=1)
        return [
            {"path": str(path),
             "top": [{"label": self.class_names[i], "probability": round(float(v), 4)}
                     for v, i in zip(row_values, row_indices, strict=True)]}
            for path, row_values, row_indices in zip(paths, values, indices, strict=True)
        ]
