"""Why did the model decide: Grad-CAM, occlusion, and the randomised-weights sanity check.

Written and explained in chapter 06; this is that code. A map says where in the log-Mel the
model's evidence for one class sits (which frequencies, which moments); it does not say why
that evidence means the class, nor that a person would agree. Nothing here imports training code.
"""

from __future__ import annotations

import copy

import torch
from scipy.stats import spearmanr
from torch import nn

from .errors import AudioclsError


def target_layer(model):  #@save
    """Return the last convolutional block of a model `create_model` built (resnet: layer4)."""
    backbone = model[1] if isinstance(model, nn.Sequential) and len(model) > 1 else model
    if hasattr(backbone, "layer4"):  # resnet, resnext, wide_resnet
        return backbone.layer4
    blocks = [m for m in backbone.children()
              if any(isinstance(c, nn.Conv2d) for c in m.modules())]
    if not blocks:
        raise AudioclsError(f"{type(backbone).__name__} has no convolutional block for Grad-CAM; "
                            "pass layer= the module whose activations to explain")
    return blocks[-1]  # e.g. regnet's trunk_output


def grad_cam(model, log_mel, class_index, layer=None, positive=True):  #@save
    """Return the Grad-CAM map of one log-Mel (n_mels, frames) for `class_index`, in [0, 1].

    A forward hook keeps the layer's activations A (channels, h, w) and a backward hook their
    gradients dScore/dA; each channel is weighted by its mean gradient, the weighted sum goes
    through a ReLU (only evidence *for* the class) and is stretched back to (n_mels, frames).
    `positive=False` skips the ReLU: a signed map in [-1, 1], negative where evidence is against.
    The log-Mel may sit on any device: it goes to the model's, and the map comes back on the CPU.
    """
    layer = layer if layer is not None else target_layer(model)
    device = next(model.parameters()).device  # where the model is (CPU, CUDA, MPS)
    kept = {}
    hooks = [layer.register_forward_hook(lambda module, inputs, output: kept.update(A=output)),
             layer.register_full_backward_hook(lambda module, grad_in, grad_out:
                                               kept.update(dA=grad_out[0]))]
    was_training = model.training
    try:
        model.eval()
        x = log_mel.detach().float().to(device).unsqueeze(0).requires_grad_(True)  # (1, n_mels, frames)
        with torch.enable_grad():
            score = model(x)[0, class_index]  # the logit: softmax would mix in the other classes
            # Gradients towards the input only: the hooks fire, no weight's .grad is touched.
            torch.autograd.grad(score, x)
        weights = kept["dA"].mean(dim=(2, 3), keepdim=True)  # (1, channels, 1, 1)
        cam = (weights * kept["A"]).sum(dim=1, keepdim=True)  # (1, 1, h, w)
        cam = torch.relu(cam) if positive else cam
        cam = nn.functional.interpolate(cam, size=tuple(log_mel.shape[-2:]), mode="bilinear",
                                        align_corners=False)[0, 0].detach()  # (n_mels, frames)
        largest = cam.abs().max()
        return (cam / largest if largest > 0 else cam).cpu()
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)


@torch.no_grad()
def occlusion(model, log_mel, class_index, axis="freq", width=8, stride=None, fill=None):  #@save
    """Return how much the probability of `class_index` falls when a band is hidden, per bin.

    A band of `width` Mel bins (axis "freq") or frames ("time") is set to `fill` (default: the
    clip's quietest value, silence in its log-Mel), every `stride` bins (default `width`); each
    bin gets the mean drop of the bands that hid it. Shape (n_mels,) or (frames,), on the CPU;
    the log-Mel may sit on any device (it is moved to the model's).
    """
    if axis not in ("freq", "time"):
        raise AudioclsError(f"occlusion axis must be 'freq' or 'time', not {axis!r}")
    log_mel = log_mel.float().to(next(model.parameters()).device)  # where the model is
    dim = 0 if axis == "freq" else 1
    size, stride = log_mel.shape[dim], stride or width
    fill = log_mel.min() if fill is None else fill
    was_training = model.training
    model.eval()
    try:
        base = model(log_mel.unsqueeze(0)).softmax(dim=1)[0, class_index]
        starts = list(range(0, max(1, size - width) + 1, stride))
        if starts[-1] + width < size:
            starts.append(size - width)  # the last band ends at the last bin
        drops, counts = torch.zeros(size), torch.zeros(size)
        for first in range(0, len(starts), 32):  # 32 hidden copies per batch
            batch = []
            for start in starts[first:first + 32]:
                hidden = log_mel.clone()
                hidden.narrow(dim, start, min(width, size - start)).fill_(fill)
                batch.append(hidden)
            probabilities = model(torch.stack(batch)).softmax(dim=1)[:, class_index]
            for start, probability in zip(starts[first:first + 32], probabilities, strict=True):
                drops[start:start + width] += (base - probability).cpu()
                counts[start:start + width] += 1
        return drops / counts.clamp_min(1)
    finally:
        model.train(was_training)


def randomized_copy(model, seed=0):  #@save
    """Return a copy of `model` with every learned weight re-drawn at random (after Adebayo et
    al., 2018, but all layers at once): a map that survives this reflects the input, not the weights.

    Each layer gets PyTorch's default initialisation (`reset_parameters`): convolution and linear
    weights drawn Kaiming-uniform and their biases uniform, BatchNorm back to scale 1, shift 0 and
    running statistics 0 and 1. torchvision's ResNet starts its convolutions differently
    (Kaiming-normal, fan_out); either way, nothing learned is left.
    """
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        copied = copy.deepcopy(model)
        for module in copied.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
                module.reset_parameters()  # PyTorch's default for the layer, not torchvision's
        return copied
    finally:
        torch.random.set_rng_state(generator_state)


def rank_correlation(first, second):  #@save
    """Return the Spearman rank correlation of two maps' values (1: same order, 0: unrelated)."""
    first, second = first.flatten().numpy(), second.flatten().numpy()
    if first.std() == 0 or second.std() == 0:
        return 0.0  # a flat map orders nothing
    return float(spearmanr(first, second).statistic)
