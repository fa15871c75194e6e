"""Export a trained model to TorchScript or ONNX for use outside this package.

The exported graph takes log-Mel segments, shape (batch, n_mels, frames), exactly as
`features.LogMel` with the model's saved FeatureConfig computes them, and returns class
probabilities; standardization, resizing and the CNN are inside it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from torch import nn

from ...errors import AudioclsError
from ...files import write_bytes, write_json
from ...predict import Predictor

FORMATS = ("torchscript", "onnx")


def segment_classifier(predictor: Predictor) -> nn.Module:
    """Return the model followed by a softmax: log-Mel segments in, class probabilities out."""
    return nn.Sequential(predictor.model, nn.Softmax(dim=1))


def example_input(predictor: Predictor, batch: int = 2) -> torch.Tensor:
    """Return a random batch of segments with the model's input shape."""
    return torch.randn(batch, predictor.recipe.feature.n_mels, predictor.num_frames) * 10 - 40


def export_paths(model_path: str | Path, fmt: str, out: str | Path | None = None
                 ) -> tuple[Path, Path]:
    """Return the file `export_model` writes (`out`, else beside the model) and its JSON sidecar."""
    out = Path(out) if out else Path(model_path).with_suffix(".ts" if fmt == "torchscript"
                                                             else ".onnx")
    return out, out.with_suffix(out.suffix + ".json")


def export_model(model_path: str | Path, fmt: str, out: str | Path | None = None) -> Path:
    """Export `model_path` as `fmt` next to it (or to `out`) and write a JSON sidecar."""
    if fmt not in FORMATS:
        raise AudioclsError(f"Unknown export format {fmt!r}; choose one of {list(FORMATS)}")
    predictor = Predictor.from_file(model_path, device="cpu")
    module = segment_classifier(predictor).eval()
    out, sidecar = export_paths(model_path, fmt, out)
    sample = example_input(predictor)
    buffer = io.BytesIO()
    with torch.no_grad():
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(module, sample), buffer)
        else:
            _export_onnx(module, sample, buffer)
    write_bytes(out, buffer.getvalue())
    write_json(sidecar, {
        "format": fmt,
        "input": "log-Mel segments (batch, n_mels, frames) from the feature_config below",
        "output": "class probabilities (batch, classes) in class_names order",
        "class_names": predictor.class_names,
        "num_frames": predictor.num_frames,
        "feature_config": predictor.recipe.feature.to_dict(),
    })
    return out


def _export_onnx(module: nn.Module, sample: torch.Tensor, buffer: io.BytesIO) -> None:
    """Write `module` as ONNX into `buffer`, or say which package is missing."""
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise AudioclsError("ONNX export needs the `onnx` and `onnxscript` packages: "
                            "pip install onnx onnxscript (and onnxruntime to run the file)") from None
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.onnx.export(module, (sample,), input_names=["log_mel"],
                                output_names=["probabilities"], dynamic_shapes=({0: batch},),
                                dynamo=True, verbose=False)
    buffer.write(program.model_proto.SerializeToString())


def describe(path: str | Path) -> dict:
    """Return the JSON sidecar of an exported model."""
    return json.loads(Path(str(path) + ".json").read_text())
