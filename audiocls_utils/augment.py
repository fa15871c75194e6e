"""Augment training batches of log-Mel segments: random gain, noise, SpecAugment masks, mixup.

Chapter 04 writes these modules and explains them; this is that code. They take segments
`(batch, n_mels, frames)` in dB, before the model standardizes them (or raw Mel power when
`recipe.feature.to_db` is False, as the original recipe's features are), and run on whole
batches on the training device (the original recipe augmented one clip at a time in
`__getitem__`, on the CPU). Gain and noise act as they would on the waveform:
- a gain of g dB adds g to every dB value (multiplies power by 10^(g/10));
- independent noise adds its power to the clip's power, on average (powers of independent
  signals add), so noise is made on the device, turned into Mel power by the features' own
  transform, and added to the cached features: no waveform needed.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn
from torchvision.transforms import v2

from .config import FeatureConfig, Recipe
from .features import MelPower


class RandomGain(nn.Module):  #@save
    """Make each clip louder or quieter by a random gain in [-max_db, +max_db] dB."""

    def __init__(self, max_db: float, to_db: bool = True) -> None:
        super().__init__()
        self.max_db, self.to_db = max_db, to_db

    def forward(self, segments: torch.Tensor) -> torch.Tensor:
        # One gain per clip, the same for every bin and frame: (batch, 1, 1)
        gain_db = (torch.rand(len(segments), 1, 1, device=segments.device) * 2 - 1) * self.max_db
        if self.to_db:
            return segments + gain_db  # a gain of g dB adds g to every dB value
        return segments * 10 ** (gain_db / 10)  # raw power: multiplied by 10^(g/10)


class AddNoise(nn.Module):  #@save
    """Add white noise of a random std in [0, max_std] to each clip's waveform, in the power domain."""

    def __init__(self, config: FeatureConfig, max_std: float) -> None:
        super().__init__()
        self.max_std, self.hop_length, self.to_db = max_std, config.hop_length, config.to_db
        self.mel_power = MelPower(config)  # the features' own Mel power step, without the dB step

    def forward(self, segments: torch.Tensor) -> torch.Tensor:
        batch, _, frames = segments.shape  # (batch, n_mels, frames)
        std = torch.rand(batch, 1, device=segments.device) * self.max_std  # one level per clip
        noise = std * torch.randn(batch, (frames - 1) * self.hop_length, device=segments.device)
        noise_power = self.mel_power(noise)  # (batch, n_mels, frames): the noise's Mel power
        power = 10 ** (segments.float() / 10) if self.to_db else segments.float()  # dB -> power
        power = power + noise_power  # powers of independent signals add (on average)
        return 10 * torch.log10(power.clamp_min(1e-10)) if self.to_db else power


class SpecMasks(nn.Module):  #@save
    """Hide a random band of Mel bins and a random run of frames in each clip (SpecAugment)."""

    def __init__(self, freq_mask: int, time_mask: int, fill: float) -> None:
        super().__init__()
        self.fill = float(fill)  # the training-set mean: the model's standardization makes it 0
        # Widths are drawn from [0, freq_mask) bins and [0, time_mask) frames; iid: per clip.
        self.freq = torchaudio.transforms.FrequencyMasking(freq_mask, iid_masks=True)
        self.time = torchaudio.transforms.TimeMasking(time_mask, iid_masks=True)

    def forward(self, segments: torch.Tensor) -> torch.Tensor:
        images = segments.unsqueeze(1)  # (batch, 1, n_mels, frames): iid masks need a channel axis
        images = self.time(self.freq(images, self.fill), self.fill)
        return images.squeeze(1)  # (batch, n_mels, frames)


class Augment(nn.Module):  #@save
    """Apply the recipe's augmentations to a training batch: gain, noise, masks, then mixup."""

    def __init__(self, recipe: Recipe, num_classes: int, fill: float, num_frames: int) -> None:
        super().__init__()
        config = recipe.feature
        self.gain = RandomGain(recipe.gain_db, config.to_db) if recipe.gain_db else nn.Identity()
        self.noise = AddNoise(config, recipe.noise_std) if recipe.noise_std else nn.Identity()
        # A time mask never hides more than an eighth of the segment, however short the crop.
        self.masks = SpecMasks(recipe.freq_mask, min(recipe.time_mask, num_frames // 8), fill)
        self.mixup = (v2.MixUp(alpha=recipe.mixup_alpha, num_classes=num_classes)
                      if recipe.mixup_alpha else None)

    def forward(self, segments: torch.Tensor, targets: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        segments = self.masks(self.noise(self.gain(segments.float())))  # (batch, n_mels, frames)
        if self.mixup is None:
            return segments, targets  # labels are the targets: (batch,) class indices
        # MixUp blends each clip with its neighbour in the batch, by lam ~ Beta(alpha, alpha), and
        # their labels alike: soft labels (batch, num_classes), which CrossEntropyLoss accepts.
        images, labels = self.mixup(segments.unsqueeze(1), targets)  # it needs (batch, 1, n_mels, frames)
        return images.squeeze(1), labels


def has_augmentation(recipe: Recipe) -> bool:  #@save
    """Return True when the recipe asks for gain, noise, masks or mixup."""
    return bool(recipe.gain_db or recipe.noise_std or recipe.time_mask or recipe.freq_mask
                or recipe.mixup_alpha)
