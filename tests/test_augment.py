"""Augmentation of log-Mel batches: gain, noise, masks and mixup do what the chapter says."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from audiocls_utils.augment import AddNoise, Augment, RandomGain, SpecMasks, has_augmentation
from audiocls_utils.config import FeatureConfig, Recipe, get_recipe
from audiocls_utils.features import LogMel

CONFIG = FeatureConfig(n_fft=512, hop_length=128, n_mels=32, top_db=None)
POWER = replace(CONFIG, to_db=False)  # raw Mel power, as the original recipe's features
RECIPE = Recipe(name="t", feature=CONFIG)


def test_gain_adds_one_drawn_amount_of_db_per_clip() -> None:
    segments = torch.randn(6, 32, 20) * 10 - 30  # (batch, n_mels, frames) in dB
    torch.manual_seed(0)
    drawn = (torch.rand(6, 1, 1) * 2 - 1) * 6.0  # what RandomGain draws after the same seed
    torch.manual_seed(0)
    shifted = RandomGain(6.0)(segments)
    assert torch.allclose(shifted - segments, drawn.expand_as(segments), atol=1e-5)
    assert drawn.abs().max() <= 6.0 and drawn.flatten().unique().numel() == 6  # one gain per clip


def test_gain_on_raw_power_multiplies_by_ten_to_the_gain_over_ten() -> None:
    segments = torch.randn(4, 32, 20) * 10 - 30
    torch.manual_seed(1)
    in_db = RandomGain(6.0)(segments)
    torch.manual_seed(1)
    in_power = RandomGain(6.0, to_db=False)(10 ** (segments / 10))
    assert torch.allclose(in_power, 10 ** (in_db / 10), rtol=1e-4)


def test_noise_adds_the_power_of_white_noise_on_average() -> None:
    torch.manual_seed(0)
    std = torch.rand(256, 1) * 0.01  # the levels AddNoise draws after the same seed
    torch.manual_seed(0)
    added = AddNoise(POWER, max_std=0.01)(torch.zeros(256, 32, 60))  # (batch, n_mels, frames)
    # By hand: every STFT bin gets std^2 * sum(window^2) on average; a Mel band sums its bins
    # with the filter's weights.
    filterbank = LogMel(POWER).mel.mel_scale.fb  # (n_freqs, n_mels)
    per_variance = torch.hann_window(512).pow(2).sum() * filterbank.sum(dim=0)  # (n_mels,)
    measured = (added.mean(dim=2) / std**2).mean(dim=0)  # (n_mels,)
    assert torch.allclose(measured, per_variance, rtol=0.05)


def test_noise_in_db_is_the_same_noise_in_power() -> None:
    segments = torch.randn(4, 32, 30) * 10 - 60
    torch.manual_seed(2)
    in_db = AddNoise(CONFIG, max_std=0.05)(segments)
    torch.manual_seed(2)
    in_power = AddNoise(POWER, max_std=0.05)(10 ** (segments / 10))
    assert torch.allclose(in_db, 10 * torch.log10(in_power), atol=1e-3)
    assert (in_db >= segments - 1e-4).all()  # noise only adds power


def test_noise_raises_quiet_bins_and_barely_moves_loud_ones() -> None:
    torch.manual_seed(0)
    noise = AddNoise(CONFIG, max_std=0.05)
    quiet, loud = torch.full((8, 32, 50), -100.0), torch.full((8, 32, 50), 30.0)
    assert noise(quiet).mean() > -60
    assert (noise(loud) - loud).abs().max() < 0.5


def _stripes(masked: torch.Tensor, fill: float, dim: int) -> torch.Tensor:
    """Return, per clip, which rows (dim=2: Mel bins) or columns (dim=1: frames) are all `fill`."""
    return (masked == fill).all(dim=dim)


def test_masks_fill_whole_stripes_with_the_fill_value_within_their_widths() -> None:
    torch.manual_seed(0)
    masked = SpecMasks(freq_mask=6, time_mask=10, fill=-3.0)(torch.full((32, 32, 100), 5.0))
    bins, frames = _stripes(masked, -3.0, dim=2), _stripes(masked, -3.0, dim=1)  # (32, 32), (32, 100)
    # Every filled value lies in a filled row or column: whole stripes, nothing else changed.
    assert torch.equal(masked == -3.0, bins[:, :, None] | frames[:, None, :])
    assert ((masked == 5.0) | (masked == -3.0)).all()
    assert bins.sum(dim=1).max() <= 5 and frames.sum(dim=1).max() <= 9  # widths < 6 and < 10
    assert bins.sum() > 0 and frames.sum() > 0
    for stripes in (bins, frames):  # each clip has one contiguous stripe per axis, or none
        for clip in stripes:
            where = clip.nonzero().flatten()
            assert len(where) == 0 or where[-1] - where[0] + 1 == len(where)
    assert len({tuple(row.tolist()) for row in frames}) > 1  # drawn per clip


def test_time_mask_never_hides_more_than_an_eighth_of_the_segment() -> None:
    augment = Augment(replace(RECIPE, time_mask=80, freq_mask=4), 3, fill=0.0, num_frames=40)
    assert augment.masks.time.mask_param == 5 and augment.masks.freq.mask_param == 4


def test_without_mixup_augment_returns_the_targets_unchanged() -> None:
    recipe = replace(RECIPE, gain_db=6.0, noise_std=0.01, time_mask=8, freq_mask=4)
    segments, targets = (torch.randn(4, 32, 40) * 10 - 40).half(), torch.tensor([0, 2, 1, 2])
    augmented, labels = Augment(recipe, 3, fill=-40.0, num_frames=40)(segments, targets)
    assert labels is targets
    assert augmented.shape == segments.shape and augmented.dtype == torch.float32


def test_mixup_blends_two_clips_and_their_labels_by_the_same_weight() -> None:
    torch.manual_seed(0)
    segments, targets = torch.randn(8, 4, 6), torch.arange(8)  # clip i has class i
    mixed, labels = Augment(replace(RECIPE, mixup_alpha=0.4), 8, fill=0.0, num_frames=6)(
        segments, targets)
    assert labels.shape == (8, 8) and torch.allclose(labels.sum(dim=1), torch.ones(8))
    for clip in range(8):
        weights = labels[clip]
        partner = int(weights.clone().index_fill_(0, torch.tensor(clip), 0).argmax())
        lam = float(weights[clip])
        assert (weights > 0).sum() <= 2 and 0 < lam <= 1
        expected = lam * segments[clip] + (1 - lam) * segments[partner]
        assert torch.allclose(mixed[clip], expected, atol=1e-5)


def test_cross_entropy_takes_mixup_labels_with_label_smoothing() -> None:
    torch.manual_seed(0)
    logits, soft = torch.randn(4, 3), torch.tensor([[0.7, 0.3, 0.0]] * 4)
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)(logits, soft)
    smoothed = 0.9 * soft + 0.1 / 3  # the smoothed target, by hand
    expected = -(smoothed * logits.log_softmax(dim=1)).sum(dim=1).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_has_augmentation_is_false_only_without_any() -> None:
    assert not has_augmentation(RECIPE) and not has_augmentation(get_recipe("baseline"))
    for setting in ("gain_db", "noise_std", "time_mask", "freq_mask", "mixup_alpha"):
        assert has_augmentation(replace(RECIPE, **{setting: 1}))
    assert has_augmentation(get_recipe("advanced")) and has_augmentation(get_recipe("course"))
