"""Turn waveforms into log-Mel spectrograms, in batches, and log-Mels into CNN inputs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torchaudio
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .audio import load_audio
from .config import FeatureConfig


class LogMel(nn.Module):
    """Compute log-Mel spectrograms (dB) for a batch of waveforms; built once per config."""

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__()
        self.config = config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            n_mels=config.n_mels,
            f_min=config.f_min,
            f_max=config.f_max,
            power=2.0,
        )
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=config.top_db)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Map (batch, samples) or (samples,) to (batch, n_mels, frames) or (n_mels, frames)."""
        power = self.mel(waveform)
        if not self.config.to_db:
            return power
        # AmplitudeToDB clamps to `top_db` below the maximum of everything but the last 3 dims:
        # a (batch, n_mels, frames) tensor would share one maximum across the whole batch, so a
        # quiet clip's dB values would depend on its batch mates. A channel axis keeps it per clip.
        return self.to_db(power.unsqueeze(-3)).squeeze(-3)


def log_mel(waveform: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Compute the log-Mel spectrogram of one waveform: (samples,) -> (n_mels, frames)."""
    return LogMel(config)(waveform)


class _ClipWaveforms(Dataset):
    """Load whole clips as mono waveforms at one sample rate (for batched feature extraction)."""

    def __init__(self, paths: Sequence[str | Path], sample_rate: int) -> None:
        self.paths = list(paths)
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        return index, load_audio(self.paths[index], self.sample_rate)


def _pad_batch(items: list[tuple[int, torch.Tensor]]) -> tuple[list[int], list[int], torch.Tensor]:
    """Stack waveforms of different lengths into one zero-padded (batch, samples) tensor."""
    indices = [index for index, _ in items]
    lengths = [waveform.shape[0] for _, waveform in items]
    batch = torch.zeros(len(items), max(lengths))
    for row, (_, waveform) in enumerate(items):
        batch[row, : waveform.shape[0]] = waveform
    return indices, lengths, batch


def extract_log_mels(
    paths: Sequence[str | Path],
    config: FeatureConfig,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    num_workers: int = 0,
    progress: bool = True,
) -> list[torch.Tensor]:
    """Compute every clip's full log-Mel ((n_mels, frames)), in batches on `device`.

    dB values are kept as float16 (half the memory); raw power (the seed's features) as float32,
    since it overflows float16's largest value, 65504.

    Clips are decoded by the DataLoader (in `num_workers` processes) and transformed together on
    the device; each result is trimmed back to its own clip's frame count.
    """
    extractor = LogMel(config).to(device)
    dtype = torch.float16 if config.to_db else torch.float32
    loader = DataLoader(
        _ClipWaveforms(paths, config.sample_rate),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_pad_batch,
    )
    results: list[torch.Tensor | None] = [None] * len(paths)
    with torch.inference_mode():
        for indices, lengths, batch in tqdm(loader, desc="log-Mel", unit="batch",
                                            disable=not progress):
            features = extractor(batch.to(device))  # (batch, n_mels, frames)
            for row, (index, length) in enumerate(zip(indices, lengths, strict=True)):
                frames = config.num_frames(length)
                results[index] = features[row, :, :frames].to("cpu", dtype).clone()
    return results  # type: ignore[return-value]


def crop_or_pad(log_mel: torch.Tensor, start: int, num_frames: int) -> torch.Tensor:
    """Return `num_frames` frames from `start`, padding past the end with the clip's floor."""
    segment = log_mel[..., start : start + num_frames]
    missing = num_frames - segment.shape[-1]
    if missing <= 0:
        return segment
    floor = log_mel.min()  # the quietest value in the clip stands for silence
    return torch.nn.functional.pad(segment, (0, missing), value=float(floor))


def window_starts(total_frames: int, num_frames: int, hop_frames: int) -> list[int]:
    """Return window starts covering a clip; the last window ends at the clip's end."""
    if total_frames <= num_frames:
        return [0]
    starts = list(range(0, total_frames - num_frames + 1, max(1, hop_frames)))
    if starts[-1] + num_frames < total_frames:
        starts.append(total_frames - num_frames)
    return starts


def feature_stats(log_mels: Sequence[torch.Tensor]) -> tuple[float, float]:
    """Return the mean and standard deviation over all frames of all clips (float64 sums)."""
    count, total, total_sq = 0, 0.0, 0.0
    for features in log_mels:
        values = features.double()
        count += values.numel()
        total += float(values.sum())
        total_sq += float((values * values).sum())
    mean = total / count
    std = max((total_sq / count - mean * mean) ** 0.5, 1e-6)
    return mean, std


class ModelInput(nn.Module):
    """Standardize a log-Mel batch and shape it like an ImageNet image batch."""

    def __init__(self, image_size: int, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        self.image_size = image_size
        self.mean = mean
        self.std = std

    def normalize(self, features: torch.Tensor) -> torch.Tensor:
        """Map (batch, n_mels, frames) to zero mean and unit variance (training-set stats)."""
        return (features - self.mean) / self.std

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Map normalized (batch, n_mels, frames) to (batch, 3, image_size, image_size)."""
        image = features.unsqueeze(1)  # (batch, 1, n_mels, frames)
        image = torch.nn.functional.interpolate(
            image, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        return image.expand(-1, 3, -1, -1)  # 3 identical channels: what ImageNet weights expect
