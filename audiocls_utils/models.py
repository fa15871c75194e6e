"""Build the classifier: a torchvision CNN with a new head, fed log-Mel segments as images.

`LogMelToImage` and `create_model` are written and explained in chapter 03; this is that code.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import torch
import torchvision
from torch import nn

from .errors import AudioclsError

PRETRAINED_CHOICES = ("auto", "yes", "no")
RESNET_FAMILY = ("resnet", "resnext", "wide_resnet", "regnet")  # torchvision models with an `fc` head


class LogMelToImage(nn.Module):  #@save
    """Standardize log-Mel segments and shape them like a batch of ImageNet images."""

    def __init__(self, image_size: int, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        self.image_size = image_size
        # Buffers, not parameters: saved with the model, never trained.
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        x = log_mel.float().unsqueeze(1)  # (batch, 1, n_mels, frames): a one-channel image
        x = nn.functional.interpolate(x, size=(self.image_size, self.image_size),
                                      mode="bilinear", align_corners=False)
        # Standardized after resizing: the same values (each pixel is a weighted mean of its
        # neighbours, weights summing to 1), computed on fewer numbers.
        x = (x - self.mean) / self.std  # mean 0, std 1 on the training set
        return x.expand(-1, 3, -1, -1)  # (batch, 3, size, size): the RGB input ImageNet CNNs expect


def create_model(name: str, num_classes: int, image_size: int = 224, mean: float = 0.0,  #@save
                 std: float = 1.0, pretrained: str = "auto") -> nn.Sequential:
    """Build a torchvision ResNet-family CNN with a `num_classes`-way head, taking log-Mels."""
    weights = "DEFAULT" if imagenet_weights_available(name, pretrained) else None
    with loading_weights(name):  # a stalled download or a damaged file: one clear line
        backbone = torchvision.models.get_model(name, weights=weights)
    backbone.fc = nn.Linear(backbone.fc.in_features, num_classes)  # the new head, trained from scratch
    return nn.Sequential(LogMelToImage(image_size, mean, std), backbone)


@contextlib.contextmanager
def loading_weights(model_name: str) -> Iterator[None]:
    """Give a weights download 30 s of silence at most, and turn a failed load into one line."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        yield
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError) as error:
        _, cached = weights_file(model_name)
        raise AudioclsError(f"Could not load ImageNet weights for {model_name} ({error}). If "
                            f"{cached} is damaged, delete it and run again.") from None
    finally:
        socket.setdefaulttimeout(previous)


def weights_file(model_name: str) -> tuple[str, Path]:
    """Return the ImageNet weights URL of a torchvision model and where torch caches it."""
    try:
        weights = torchvision.models.get_model_weights(model_name).DEFAULT
    except (ValueError, KeyError):
        raise AudioclsError(f"Unknown model {model_name!r}; try resnet18 or resnext101_32x8d") from None
    if not model_name.startswith(RESNET_FAMILY):
        raise AudioclsError(f"{model_name} has no `fc` head to replace: the course builds ResNet-"
                            f"family models ({', '.join(RESNET_FAMILY)}...), e.g. resnet18")
    return weights.url, Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


ANSWERS: dict[str, bool] = {}  # url -> whether it answered: asked once per process


def offline() -> bool:
    """Return True when AUDIOCLS_OFFLINE is set (to anything but 0): no request is ever sent."""
    return os.environ.get("AUDIOCLS_OFFLINE", "") not in ("", "0")


def reachable(url: str, timeout: float = 2.0) -> bool:
    """Return True if `url` answers within `timeout` seconds, name lookup included.

    Asked once per process (the answer is kept in ANSWERS), never with AUDIOCLS_OFFLINE set:
    bad Wi-Fi costs a training run `timeout` seconds at most, once.
    """
    if offline():
        return False
    if url not in ANSWERS:
        ANSWERS[url] = _answers(url, timeout)
    return ANSWERS[url]


def _answers(url: str, timeout: float) -> bool:
    """Send one HEAD request from a daemon thread; give up after `timeout` s, however it hangs."""
    answered: list[bool] = []

    def ask() -> None:
        try:
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=timeout):
                answered.append(True)
        except (TimeoutError, OSError, ValueError):
            pass

    # urlopen's timeout leaves out the name lookup, which a bad network can stall for 30 s.
    thread = threading.Thread(target=ask, name="audiocls-reachable", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered)


def imagenet_weights_available(model_name: str, pretrained: str | bool = "auto") -> bool:
    """Decide whether to load ImageNet weights: cached or reachable. 'auto' says in one line
    when it trains from scratch; 'yes' stops, naming the file to fetch and where to put it."""
    choice = {True: "yes", False: "no"}.get(pretrained, pretrained)  # type: ignore[call-overload]
    if choice not in PRETRAINED_CHOICES:
        raise AudioclsError(f"pretrained must be one of {PRETRAINED_CHOICES}, not {pretrained!r}")
    if choice == "no":
        weights_file(model_name)  # still names an unknown model
        return False
    url, cached = weights_file(model_name)
    if cached.exists() or reachable(url):
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


def count_parameters(model: nn.Module) -> int:
    """Return the number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
