"""Build torchvision CNNs with a new classification head, ImageNet weights when they can be had."""

from __future__ import annotations

import os
import socket
import urllib.request
from pathlib import Path

import torch
import torchvision
from torch import nn

from .errors import AudioclsError

PRETRAINED_CHOICES = ("auto", "yes", "no")


def weights_file(model_name: str) -> tuple[str, Path]:
    """Return the ImageNet weights URL of a torchvision model and where torch caches it."""
    try:
        weights = torchvision.models.get_model_weights(model_name).DEFAULT
    except (ValueError, KeyError):
        raise AudioclsError(f"Unknown model {model_name!r}; try resnet18 or resnext101_32x8d") from None
    url = weights.url
    return url, Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _online(url: str, timeout: float = 3.0) -> bool:
    """Return True if the weights server answers within `timeout` seconds."""
    if os.environ.get("AUDIOCLS_OFFLINE", "") not in ("", "0"):
        return False
    try:
        request = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except (TimeoutError, OSError, ValueError):
        return False


def resolve_pretrained(model_name: str, pretrained: str | bool) -> bool:
    """Decide whether to load ImageNet weights; 'auto' says in one line when it cannot."""
    choice = {True: "yes", False: "no"}.get(pretrained, pretrained)  # type: ignore[call-overload]
    if choice not in PRETRAINED_CHOICES:
        raise AudioclsError(f"pretrained must be one of {PRETRAINED_CHOICES}, not {pretrained!r}")
    if choice == "no":
        return False
    url, cached = weights_file(model_name)
    if cached.exists() or _online(url):
        return True
    advice = (f"ImageNet weights for {model_name} are not cached at {cached} and {url} cannot be "
              "reached")
    if choice == "yes":
        raise AudioclsError(
            f"{advice}. Download that file on a machine with internet and copy it to {cached} "
            "(or set TORCH_HOME), or train from scratch with pretrained='no'."
        )
    print(f"Note: {advice}; training {model_name} from scratch (random initialization).")
    return False


def create_model(model_name: str, num_classes: int, pretrained: str | bool = "auto") -> nn.Module:
    """Build a torchvision classifier with a `num_classes`-way head."""
    use_weights = resolve_pretrained(model_name, pretrained)
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # a stalled download fails instead of hanging
    try:
        model = torchvision.models.get_model(model_name, weights="DEFAULT" if use_weights else None)
    except (OSError, RuntimeError) as error:
        raise AudioclsError(f"Could not load ImageNet weights for {model_name}: {error}") from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
    replace_head(model, num_classes)
    return model


def replace_head(model: nn.Module, num_classes: int) -> None:
    """Swap the last Linear layer (fc, classifier, classifier[-1] or heads.head) for a new one."""
    for owner in (model, getattr(model, "heads", None)):
        for name in ("fc", "classifier", "head"):
            layer = getattr(owner, name, None)
            if isinstance(layer, nn.Sequential) and len(layer) and isinstance(layer[-1], nn.Linear):
                owner, name, layer = layer, str(len(layer) - 1), layer[-1]
            if isinstance(layer, nn.Linear):
                setattr(owner, name, nn.Linear(layer.in_features, num_classes))
                return
    raise AudioclsError(f"Don't know where the classification head of {type(model).__name__} is")


def count_parameters(model: nn.Module) -> int:
    """Return the number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
