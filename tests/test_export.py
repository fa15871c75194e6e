"""Exported models give the same predictions as the trained one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from audiocls_utils.cli import main
from audiocls_utils.config import apply_profile, get_recipe
from audiocls_utils.export import SegmentClassifier, describe, example_input
from audiocls_utils.predict import Predictor
from audiocls_utils.train import model_bundle


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Save an untrained but complete model file (export does not care how good it is)."""
    from audiocls_utils.models import create_model

    recipe = replace(apply_profile(get_recipe("baseline"), "smoke"), image_size=32)
    model = create_model(recipe.model, 3, pretrained="no")
    path = tmp_path_factory.mktemp("model") / "model.pt"
    torch.save(model_bundle(model.eval(), recipe, ["a", "b", "c"], 20, -40.0, 12.0), path)
    return path


def test_segment_classifier_matches_the_predictor_pipeline(model_file: Path) -> None:
    predictor = Predictor.from_file(model_file, device="cpu")
    segments = example_input(predictor, 4)
    with torch.no_grad():
        expected = predictor.model(predictor.pipeline(segments)).softmax(dim=1)
        assert torch.allclose(SegmentClassifier(predictor).eval()(segments), expected, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_model_gives_the_same_probabilities(model_file: Path, tmp_path: Path,
                                                     fmt: str) -> None:
    out = tmp_path / f"model.{fmt}"
    assert main(["export", "--model", str(model_file), "--format", fmt, "--out", str(out)]) == 0
    predictor = Predictor.from_file(model_file, device="cpu")
    segments = example_input(predictor, 3)
    with torch.no_grad():
        expected = SegmentClassifier(predictor).eval()(segments).numpy()
    if fmt == "torchscript":
        actual = torch.jit.load(str(out))(segments).detach().numpy()
    else:
        onnxruntime = pytest.importorskip("onnxruntime")
        session = onnxruntime.InferenceSession(str(out))
        actual = session.run(None, {"log_mel": segments.numpy()})[0]
    np.testing.assert_allclose(actual, expected, atol=1e-5)
    assert describe(out)["class_names"] == ["a", "b", "c"]
