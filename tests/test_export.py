"""Exported models give the same predictions as the trained one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tone, write_wav
from torch import nn

from audiocls_utils.audio import load_audio
from audiocls_utils.config import apply_profile, get_recipe
from audiocls_utils.engine.commands.cli import main
from audiocls_utils.engine.commands.export import describe, example_input, segment_classifier
from audiocls_utils.features import LogMel
from audiocls_utils.models import create_model
from audiocls_utils.predict import Predictor, model_bundle

NUM_FRAMES = 20


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Save an untrained but complete model file (export does not care how good it is)."""
    recipe = replace(apply_profile(get_recipe("baseline"), "smoke"), image_size=32)
    torch.manual_seed(0)
    model = create_model(recipe.model, 3, recipe.image_size, mean=-40.0, std=12.0,
                         pretrained="no")
    path = tmp_path_factory.mktemp("model") / "model.pt"
    torch.save(model_bundle(model.eval(), recipe, ["a", "b", "c"], NUM_FRAMES), path)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1.5 s tone: 65 frames at a hop of 512, so six overlapping windows of 20 frames."""
    return write_wav(tmp_path_factory.mktemp("clip") / "tone.wav", tone(440.0, seconds=1.5))


def _windows(predictor: Predictor, path: Path) -> torch.Tensor:
    """Cut a file's log-Mel into the windows the predictor scores, by hand: (6, n_mels, 20)."""
    log_mel = LogMel(predictor.recipe.feature)(load_audio(path, predictor.recipe.feature.sample_rate))
    assert log_mel.shape[-1] == 1 + round(1.5 * 22050) // 512 == 65
    # A hop of half a window (eval_hop_fraction 0.5); the last window ends at the clip's end.
    return torch.stack([log_mel[:, start : start + NUM_FRAMES] for start in (0, 10, 20, 30, 40, 45)])


def test_segment_classifier_standardizes_resizes_and_applies_the_softmax(model_file: Path) -> None:
    predictor = Predictor.from_file(model_file, device="cpu")
    segments = example_input(predictor, 4)
    assert segments.shape == (4, predictor.recipe.feature.n_mels, NUM_FRAMES)
    backbone = predictor.model[1]
    with torch.no_grad():  # the statistics the model file was saved with, applied by hand
        image = ((segments + 40.0) / 12.0).unsqueeze(1)
        image = nn.functional.interpolate(image, size=(32, 32), mode="bilinear",
                                          align_corners=False).expand(-1, 3, -1, -1)
        expected = backbone(image).softmax(dim=1)
        actual = segment_classifier(predictor).eval()(segments)
    assert torch.allclose(actual, expected, atol=1e-6)
    assert torch.allclose(actual.sum(dim=1), torch.ones(4))


def test_segment_classifier_on_a_files_windows_gives_the_predictors_probabilities(
    model_file: Path, clip: Path
) -> None:
    predictor = Predictor.from_file(model_file, device="cpu")
    with torch.no_grad():
        expected = segment_classifier(predictor).eval()(_windows(predictor, clip)).mean(dim=0)
    assert torch.allclose(predictor.probabilities([clip])[0], expected, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_model_gives_the_same_probabilities(model_file: Path, clip: Path,
                                                     tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"model.{fmt}"
    assert main(["export", "--model", str(model_file), "--format", fmt, "--out", str(out)]) == 0
    predictor = Predictor.from_file(model_file, device="cpu")
    windows = _windows(predictor, clip)  # a batch of 6: the export's batch axis is dynamic
    if fmt == "torchscript":
        actual = torch.jit.load(str(out))(windows).detach().numpy()
    else:
        onnxruntime = pytest.importorskip("onnxruntime")
        session = onnxruntime.InferenceSession(str(out))
        actual = session.run(None, {"log_mel": windows.numpy()})[0]
    # Averaged over the windows, as the predictor does: the same probabilities for the file.
    np.testing.assert_allclose(actual.mean(axis=0), predictor.probabilities([clip])[0].numpy(),
                               atol=1e-5)
    sidecar = describe(out)
    assert sidecar["class_names"] == ["a", "b", "c"] and sidecar["num_frames"] == NUM_FRAMES
    assert sidecar["feature_config"] == predictor.recipe.feature.to_dict()
