"""The explanation maps point where a model's evidence is: checked on small models whose logit,
by construction, depends on one region of the input only."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from audiocls_utils.explain import (
    grad_cam,
    occlusion,
    randomized_copy,
    rank_correlation,
    target_layer,
)
from audiocls_utils.models import create_model

N_MELS, FRAMES = 32, 40


class BandModel(nn.Module):
    """A CNN whose class-1 logit is the mean activation of Mel bins 20-27 (frames all) only.

    `features` keeps the spatial layout (no pooling), so Grad-CAM's map can be compared bin by bin.
    """

    def __init__(self, rows: slice = slice(20, 28), columns: slice = slice(None)) -> None:
        super().__init__()
        self.rows, self.columns = rows, columns
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        with torch.no_grad():
            self.features[0].weight.fill_(0.0)
            self.features[0].weight[:, 0, 1, 1] = 1.0  # each channel copies the input
            self.features[0].bias.fill_(0.0)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        a = self.features(log_mel.unsqueeze(1))  # (batch, 4, n_mels, frames)
        evidence = a[:, :, self.rows, self.columns].mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(evidence), evidence], dim=1)


class LoudQuietModel(nn.Module):
    """Global-average-pooled like a ResNet: channel 0 fires where the input is loud (> 1), channel
    1 where it is quiet (< 1); class 0's logit is the quiet channel's mean, class 1's the loud one's.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU())
        with torch.no_grad():
            self.features[0].weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.features[0].bias.copy_(torch.tensor([-1.0, 1.0]))

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        a = self.features(log_mel.unsqueeze(1))  # (batch, 2, n_mels, frames)
        return a.mean(dim=(2, 3)).flip(1)  # (batch, 2): [quiet, loud]


def _input() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(N_MELS, FRAMES) + 0.5  # positive: the ReLU passes everything


def _loud(rows: slice = slice(None), columns: slice = slice(None)) -> torch.Tensor:
    """A quiet log-Mel (values near 0) with one loud region (near 3)."""
    torch.manual_seed(0)
    log_mel = 0.1 * torch.rand(N_MELS, FRAMES)
    log_mel[rows, columns] += 3.0
    return log_mel


def test_target_layer_is_the_last_residual_stage_of_a_course_model() -> None:
    model = create_model("resnet18", 3, 32, pretrained="no")
    assert target_layer(model) is model[1].layer4
    band = BandModel()
    assert target_layer(band) is band.features  # no layer4: the last child holding a conv


def test_grad_cam_peaks_on_the_band_that_is_evidence_for_the_class() -> None:
    model = LoudQuietModel()
    log_mel = _loud(rows=slice(20, 28))
    cam = grad_cam(model, log_mel, 1)  # "loud": its evidence is bins 20-27
    assert cam.shape == (N_MELS, FRAMES) and cam.min() >= 0 and cam.max() == pytest.approx(1.0)
    inside, outside = cam[20:28].mean(), torch.cat([cam[:19], cam[29:]]).mean()
    assert inside > 0.8 and outside < 0.01, (inside, outside)
    quiet = grad_cam(model, log_mel, 0)  # "quiet": everywhere but that band
    assert quiet[20:28].mean() < 0.01 and quiet[:18].mean() > 0.8


def test_grad_cam_follows_a_region_in_time_too_and_leaves_no_weight_gradient() -> None:
    model = LoudQuietModel()
    cam = grad_cam(model, _loud(columns=slice(0, 10)), 1)
    assert cam[:, :10].mean() > 0.8 and cam[:, 12:].mean() < 0.01
    assert all(p.grad is None for p in model.parameters())


def test_a_signed_map_shows_evidence_against_the_class_where_grad_cam_is_flat() -> None:
    model = LoudQuietModel()
    model.forward = lambda log_mel: torch.stack(  # class 0: the loud channel counts against it
        [-LoudQuietModel.forward(model, log_mel)[:, 1], LoudQuietModel.forward(model, log_mel)[:, 1]], 1)
    log_mel = _loud(rows=slice(20, 28))
    assert grad_cam(model, log_mel, 0).max() == 0  # no evidence for it: ReLU leaves nothing
    signed = grad_cam(model, log_mel, 0, positive=False)
    assert signed.min() == pytest.approx(-1.0) and signed.max() <= 0
    assert signed[20:28].mean() < -0.8 and signed[:18].abs().mean() < 0.01
    assert torch.allclose(grad_cam(model, log_mel, 1, positive=False), grad_cam(model, log_mel, 1))


def test_hooks_are_removed_even_when_the_backward_pass_fails() -> None:
    model = create_model("resnet18", 3, 32, pretrained="no").train()
    layer = target_layer(model)
    with pytest.raises(IndexError):
        grad_cam(model, _input(), class_index=7)  # there are 3 classes
    assert not layer._forward_hooks and not layer._backward_hooks
    assert model.training  # put back as it was
    cam = grad_cam(model, _input(), 2)
    assert cam.shape == (N_MELS, FRAMES) and not layer._forward_hooks


def test_occlusion_drop_is_largest_on_the_informative_band() -> None:
    model = nn.Sequential(BandModel(), nn.Linear(2, 2))  # logits -> a two-way softmax that moves
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.0, -0.5], [0.0, 0.5]]))
        model[1].bias.zero_()
    log_mel = _loud(rows=slice(20, 28))  # every bin of the band the logit reads is loud
    drops = occlusion(model, log_mel, 1, axis="freq", width=4)
    assert drops.shape == (N_MELS,)
    assert drops[20:28].min() > 0.05 and drops[:16].abs().max() < 1e-6
    assert int(drops.argmax()) in range(20, 28)
    in_time = occlusion(model, log_mel, 1, axis="time", width=8)
    assert in_time.shape == (FRAMES,) and in_time.min() > 0  # every stretch holds some evidence


def test_a_randomised_model_gives_a_different_map() -> None:
    torch.manual_seed(0)
    model = create_model("resnet18", 3, 32, pretrained="no").eval()
    log_mel = torch.zeros(N_MELS, FRAMES)
    log_mel[4:8, :] = 3.0  # one loud band: a trained-looking input
    log_mel += 0.1 * torch.randn(N_MELS, FRAMES)
    cam = grad_cam(model, log_mel, 0)
    assert rank_correlation(cam, cam) == pytest.approx(1.0)
    assert rank_correlation(cam, grad_cam(model, log_mel, 0)) == pytest.approx(1.0)  # deterministic
    random = randomized_copy(model, seed=1)
    assert not torch.equal(random[1].conv1.weight, model[1].conv1.weight)
    assert torch.equal(random[0].mean, model[0].mean)  # the input's standardization is kept
    assert rank_correlation(cam, grad_cam(random, log_mel, 0)) < 0.9
    assert rank_correlation(torch.zeros(3, 3), torch.rand(3, 3)) == 0.0  # a flat map orders nothing


class Seen(Exception):
    """Raised by DeviceProbe once it has seen its input: a meta tensor holds no values to go on with."""


class DeviceProbe(nn.Module):
    """A model whose weights sit on the "meta" device (as a GPU model's sit on "cuda"): its forward
    records where its input arrived and stops."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(1, 1, 1, device="meta")
        self.seen: list[torch.device] = []

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        self.seen.append(log_mel.device)
        raise Seen


@pytest.mark.parametrize("explain", [grad_cam, occlusion])
def test_the_log_mel_is_sent_to_the_models_device(explain) -> None:  # noqa: ANN001 - a function
    model = DeviceProbe()
    with pytest.raises(Seen):
        explain(model, _input(), 0)  # a CPU log-Mel, as the chapter's cells pass it
    assert model.seen == [torch.device("meta")]


def test_maps_come_back_on_the_cpu() -> None:
    model = LoudQuietModel()
    assert grad_cam(model, _loud(), 1).device.type == "cpu"
    assert occlusion(model, _loud(), 1).device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_model_explains_a_cpu_log_mel() -> None:
    model = create_model("resnet18", 3, 32, pretrained="no").cuda()
    cam, drops = grad_cam(model, _input(), 1), occlusion(model, _input(), 1, width=4)
    assert cam.device.type == "cpu" and cam.shape == (N_MELS, FRAMES)
    assert drops.device.type == "cpu" and drops.shape == (N_MELS,)
