"""Predict labels for audio files of any length with a saved model."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .audio import load_audio
from .augment import InputPipeline
from .config import Recipe
from .data import SegmentDataset
from .errors import AudioclsError
from .features import LogMel
from .files import load_torch
from .models import create_model
from .train import MODEL_FORMAT, pick_device, predict_clips

REQUIRED_KEYS = {"format", "model_name", "state_dict", "class_names", "recipe", "num_frames",
                 "mean", "std"}


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
    if not isinstance(bundle, dict) or bundle.get("format") != MODEL_FORMAT:
        raise AudioclsError(f"{path}: not an audiocls model file (expected format {MODEL_FORMAT})")
    missing = REQUIRED_KEYS - set(bundle)
    if missing:
        raise AudioclsError(f"{path}: model file lacks {sorted(missing)}; retrain it")
    return bundle


class Predictor:
    """Hold a trained model with its features and class list, ready to label files."""

    def __init__(self, bundle: dict[str, Any], device: str | torch.device | None = None) -> None:
        self.device = pick_device(str(device) if device else None)
        self.recipe = Recipe.from_dict(bundle["recipe"])
        self.class_names: list[str] = list(bundle["class_names"])
        self.num_frames = int(bundle["num_frames"])
        self.model = create_model(bundle["model_name"], len(self.class_names), pretrained="no")
        self.model.load_state_dict(bundle["state_dict"])
        self.model.to(self.device).eval()
        self.pipeline = InputPipeline(self.recipe, self.num_frames, bundle["mean"],
                                      bundle["std"]).to(self.device)
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
        dataset = SegmentDataset(features, [0] * len(features), self.num_frames, train=False,
                                 hop_frames=hop)
        return predict_clips(self.model, dataset, self.pipeline, self.device,
                             batch_size=self.recipe.batch_size)

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
