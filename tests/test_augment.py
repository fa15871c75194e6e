"""Augmentation on log-Mel batches: exact gain, noise power that matches real noise, masks."""

from __future__ import annotations

from dataclasses import replace

import torch

from audiocls_utils.augment import InputPipeline, SignalAugment, SpecMasks, noise_power_per_mel
from audiocls_utils.config import FeatureConfig, Recipe
from audiocls_utils.features import LogMel

CONFIG = FeatureConfig(n_fft=512, hop_length=128, n_mels=32, top_db=None)
RECIPE = Recipe(name="t", feature=CONFIG)


def test_gain_adds_the_same_number_of_db_to_every_bin() -> None:
    torch.manual_seed(0)
    features = torch.randn(4, 32, 20) * 10 - 30
    augmented = SignalAugment(replace(RECIPE, gain_db=6.0))(features)
    shift = augmented - features
    assert torch.allclose(shift, shift[:, :1, :1].expand_as(shift), atol=1e-3)
    assert shift.abs().max() <= 6.0 + 1e-3 and shift[:, 0, 0].std() > 0  # one draw per clip


def test_expected_noise_power_matches_noise_added_to_the_waveform() -> None:
    torch.manual_seed(0)
    noise = 0.01 * torch.randn(64, 22050)
    measured = LogMel(replace(CONFIG, to_db=False))(noise).mean(dim=(0, 2))  # (n_mels,)
    expected = noise_power_per_mel(CONFIG, 0.01)
    assert torch.allclose(measured, expected, rtol=0.05)


def test_noise_raises_quiet_bins_and_barely_moves_loud_ones() -> None:
    torch.manual_seed(0)
    quiet, loud = torch.full((8, 32, 50), -120.0), torch.full((8, 32, 50), 20.0)
    augment = SignalAugment(replace(RECIPE, noise_std=0.05))
    assert augment(quiet).mean() > -90
    assert (augment(loud) - loud).abs().max() < 0.5


def test_masks_zero_stripes_no_wider_than_asked() -> None:
    torch.manual_seed(0)
    masks = SpecMasks(time_mask=10, freq_mask=5, num_frames=200)
    masked = masks(torch.ones(16, 32, 200))
    zero_frames = (masked == 0).all(dim=1).sum(dim=1)  # fully masked frames per clip
    zero_bins = (masked == 0).all(dim=2).sum(dim=1)
    assert zero_frames.max() <= 10 and zero_bins.max() <= 5
    assert zero_frames.sum() > 0 and zero_bins.sum() > 0


def test_masks_never_hide_more_than_an_eighth_of_a_short_segment() -> None:
    masks = SpecMasks(time_mask=80, freq_mask=0, num_frames=40)
    assert masks.time is not None and masks.time.mask_param == 5


def test_pipeline_augments_only_in_training() -> None:
    recipe = replace(RECIPE, gain_db=6.0, time_mask=4, freq_mask=4, image_size=32)
    pipeline = InputPipeline(recipe, num_frames=40, mean=-30.0, std=10.0)
    features = torch.randn(2, 32, 40) * 10 - 30
    assert torch.equal(pipeline(features), pipeline(features))
    assert not torch.equal(pipeline(features, train=True), pipeline(features))
    assert pipeline(features).shape == (2, 3, 32, 32)


def test_augmentation_examples_each_change_only_what_they_should() -> None:
    from audiocls_utils.augment import augmentation_examples

    torch.manual_seed(1)
    features = torch.randn(32, 40) * 10 - 40  # (n_mels, frames) in dB
    recipe = replace(RECIPE, gain_db=6.0, noise_std=0.05, time_mask=8, freq_mask=6)
    examples = augmentation_examples(features, recipe, mean=-40.0, std=10.0, seed=0)
    original = examples["original"]
    assert torch.allclose(original, (features + 40) / 10)
    shift = examples["gain (up to ±6 dB)"] - original
    assert torch.allclose(shift, shift[0, 0].expand_as(shift), atol=1e-3)  # one gain for the clip
    assert abs(float(shift[0, 0])) <= 0.6 + 1e-4  # at most 6 dB / std 10
    assert (examples["noise (std up to 0.05)"] >= original - 1e-4).all()  # noise only adds power
    masked = examples["time mask (up to 5 frames)"]  # 40 frames // 8
    changed = (masked != original).any(dim=0)
    assert changed.sum() <= 5 and (masked[:, changed] == 0).all()
    freq = examples["frequency mask (up to 6 bins)"]
    assert ((freq != original).any(dim=1)).sum() <= 6
    assert examples["all together"].shape == features.shape
