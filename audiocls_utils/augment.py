"""Augment batches of log-Mel spectrograms on the device: gain, noise, time and frequency masks.

The seed applied gain and noise to each waveform on the CPU. Both have exact or expected
counterparts on the spectrogram, so they run on whole batches of (cached) features instead:
- a gain of g dB adds g to every dB value (multiplies power by 10^(g/10));
- independent Gaussian noise of standard deviation s adds, on average, s^2 * sum(window^2)
  * sum(filterbank column) to each Mel bin's power: powers of independent signals add.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from .config import FeatureConfig, Recipe
from .features import ModelInput, mel_filterbank

_AMIN = 1e-10  # AmplitudeToDB's floor: 10 * log10(1e-10) = -100 dB


def noise_power_per_mel(config: FeatureConfig, noise_std: float) -> torch.Tensor:
    """Return the expected Mel power (n_mels,) that white noise of std `noise_std` adds per frame."""
    window = torch.hann_window(config.n_fft)
    return noise_std**2 * window.pow(2).sum() * mel_filterbank(config).sum(dim=0)


def _effective_bins(config: FeatureConfig) -> torch.Tensor:
    """Return how many independent STFT bins each Mel band averages (sets the noise spread)."""
    filterbank = mel_filterbank(config)
    weights_sq = filterbank.pow(2).sum(dim=0).clamp_min(1e-12)
    return (filterbank.sum(dim=0).pow(2) / weights_sq).clamp_min(1.0)


class SignalAugment(nn.Module):
    """Apply random gain and additive noise to (batch, n_mels, frames) features."""

    def __init__(self, recipe: Recipe) -> None:
        super().__init__()
        self.gain_db = recipe.gain_db
        self.to_db = recipe.feature.to_db
        self.noise_std = recipe.noise_std
        self.register_buffer("noise_power", noise_power_per_mel(recipe.feature, recipe.noise_std))
        self.register_buffer("noise_shape", _effective_bins(recipe.feature))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Return augmented features; each clip of the batch gets its own gain and noise draw."""
        batch = features.shape[0]
        power = features.float()
        if self.to_db:
            power = torch.pow(10.0, power / 10.0)
        if self.gain_db > 0:
            gain_db = (torch.rand(batch, 1, 1, device=power.device) * 2 - 1) * self.gain_db
            power = power * torch.pow(10.0, gain_db / 10.0)
        if self.noise_std > 0:
            # Noise power per (bin, frame) is a sum of exponentials: Gamma(k, mean/k).
            shape = self.noise_shape.view(1, -1, 1).expand_as(power)
            draw = torch.distributions.Gamma(shape, torch.ones_like(shape)).sample() / shape
            level = torch.rand(batch, 1, 1, device=power.device)  # 0..noise_std, per clip
            power = power + level**2 * self.noise_power.view(1, -1, 1) * draw
        if self.to_db:
            return 10.0 * torch.log10(power.clamp_min(_AMIN))
        return power


class SpecMasks(nn.Module):
    """Hide random time and frequency stripes of each clip (SpecAugment), after normalization."""

    def __init__(self, time_mask: int, freq_mask: int, num_frames: int) -> None:
        super().__init__()
        # A mask never hides more than an eighth of the segment, however short the profile's crop.
        time_mask = min(time_mask, num_frames // 8)
        self.time = torchaudio.transforms.TimeMasking(time_mask, iid_masks=True) if time_mask else None
        self.freq = (
            torchaudio.transforms.FrequencyMasking(freq_mask, iid_masks=True) if freq_mask else None
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Return (batch, n_mels, frames) with masked stripes set to 0, the normalized mean."""
        image = features.unsqueeze(1)  # iid_masks needs (batch, channel, n_mels, frames)
        if self.time is not None:
            image = self.time(image)
        if self.freq is not None:
            image = self.freq(image)
        return image.squeeze(1)


def has_augmentation(recipe: Recipe) -> bool:
    """Return True when the recipe asks for any augmentation."""
    return bool(recipe.gain_db or recipe.noise_std or recipe.time_mask or recipe.freq_mask)


class InputPipeline(nn.Module):
    """Turn a batch of log-Mel segments into CNN inputs, augmenting only in training."""

    def __init__(self, recipe: Recipe, num_frames: int, mean: float = 0.0, std: float = 1.0,
                 channels_last: bool = False) -> None:
        super().__init__()
        self.signal = SignalAugment(recipe) if recipe.gain_db or recipe.noise_std else None
        self.masks = SpecMasks(recipe.time_mask, recipe.freq_mask, num_frames)
        self.model_input = ModelInput(recipe.image_size, mean, std, channels_last)

    def forward(self, features: torch.Tensor, train: bool = False) -> torch.Tensor:
        """Map (batch, n_mels, frames) to (batch, 3, image_size, image_size)."""
        if train and self.signal is not None:
            features = self.signal(features)
        features = self.model_input.normalize(features)
        if train:
            features = self.masks(features)
        return self.model_input(features)


def mixup(inputs: torch.Tensor, targets: torch.Tensor, alpha: float
          ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Blend each example with another of the batch (mixup, Zhang et al. 2018).

    Return the mixed inputs, the partner's targets and the weight `lam` of the example's own
    target: the loss is lam * loss(targets) + (1 - lam) * loss(partner_targets).
    """
    if alpha <= 0:
        return inputs, targets, 1.0
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    partner = torch.randperm(inputs.shape[0], device=inputs.device)
    return lam * inputs + (1.0 - lam) * inputs[partner], targets[partner], lam
