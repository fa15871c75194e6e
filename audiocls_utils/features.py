"""Turn waveforms into log-Mel spectrograms, in batches, and log-Mels into CNN inputs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
import torch
import torchaudio
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .audio import load_audio
from .config import FeatureConfig

if TYPE_CHECKING:
    from .cache import CachedLogMel

# A log-Mel (n_mels, frames) in memory or on disk; all that is asked of it is `.shape`, `.min()`
# and slicing like `[..., start:stop]`.
LogMelSource = Union[torch.Tensor, np.ndarray, "CachedLogMel"]


class LogMel(nn.Module):
    """Compute log-Mel spectrograms (dB) for a batch of waveforms; built once per config.

    With `center=False` the caller pads each clip itself (see `iter_log_mels`).
    """

    def __init__(self, config: FeatureConfig, center: bool = True) -> None:
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
            center=center,
        )
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=config.top_db)

    def forward(self, waveform: torch.Tensor, num_frames: Sequence[int] | None = None
                ) -> torch.Tensor:
        """Map (batch, samples) or (samples,) to (batch, n_mels, frames) or (n_mels, frames).

        `num_frames` gives each clip's own frame count in a padded batch: later frames are
        padding and are kept out of that clip's dB floor.
        """
        power = self.mel(waveform)
        if num_frames is not None:
            for row, frames in enumerate(num_frames):
                power[row, :, frames:] = 0.0
        if not self.config.to_db:
            return power
        # AmplitudeToDB clamps to `top_db` below the maximum of everything but the last 3 dims:
        # a (batch, n_mels, frames) tensor would share one maximum across the whole batch, so a
        # quiet clip's dB values would depend on its batch mates. A channel axis keeps it per clip.
        return self.to_db(power.unsqueeze(-3)).squeeze(-3)


def log_mel(waveform: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Compute the log-Mel spectrogram of one waveform: (samples,) -> (n_mels, frames)."""
    return LogMel(config)(waveform)


def storage_dtype(config: FeatureConfig) -> torch.dtype:
    """Return the dtype features are kept in: float16 for dB, float32 for raw Mel power.

    dB values need no more than float16's 3 significant digits; raw power spans 10 orders of
    magnitude and overflows float16 (largest 65504) on loud clips.
    """
    return torch.float16 if config.to_db else torch.float32


class _ClipWaveforms(Dataset):
    """Load whole clips as mono waveforms at one sample rate (for batched feature extraction)."""

    def __init__(self, paths: Sequence[str | Path], sample_rate: int) -> None:
        self.paths = list(paths)
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        return index, load_audio(self.paths[index], self.sample_rate)


class _PadBatch:
    """Collate clips of different lengths into one batch whose STFT frames match each clip's own."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config

    def __call__(self, items: list[tuple[int, torch.Tensor]]
                 ) -> tuple[list[int], list[int], torch.Tensor]:
        """Return clip indices, frame counts and a (batch, samples) tensor.

        Each clip is reflect-padded by n_fft // 2 on both sides, as a centered STFT of the clip
        alone would be, then zero-padded to the longest: the features of a clip never depend
        on its batch mates, so a cache entry is the same whichever batch computed it.
        """
        edge = self.config.n_fft // 2
        padded = [_reflect_pad(waveform, edge) for _, waveform in items]
        batch = torch.zeros(len(items), max(w.shape[0] for w in padded))
        for row, waveform in enumerate(padded):
            batch[row, : waveform.shape[0]] = waveform
        frames = [self.config.num_frames(waveform.shape[0]) for _, waveform in items]
        return [index for index, _ in items], frames, batch


def _reflect_pad(waveform: torch.Tensor, edge: int) -> torch.Tensor:
    """Pad (samples,) by `edge` on both sides by reflection (zeros for clips too short to reflect)."""
    mode = "reflect" if waveform.shape[0] > edge else "constant"
    return torch.nn.functional.pad(waveform.view(1, -1), (edge, edge), mode=mode).view(-1)


def iter_log_mels(
    paths: Sequence[str | Path],
    config: FeatureConfig,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    num_workers: int = 0,
    progress: bool = True,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (position in `paths`, log-Mel (n_mels, frames) on the CPU) for every clip, batch by batch.

    Clips are decoded by the DataLoader (in `num_workers` processes) and transformed together on
    the device; each result is trimmed back to its own clip's frame count. Nothing is kept
    between batches, so memory stays bounded however many clips there are.
    """
    device = torch.device(device)
    extractor = LogMel(config, center=False).to(device)
    loader = DataLoader(
        _ClipWaveforms(paths, config.sample_rate),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_PadBatch(config),
        pin_memory=device.type == "cuda",
    )
    dtype = storage_dtype(config)
    with torch.inference_mode():
        for indices, frames, batch in tqdm(loader, desc="log-Mel", unit="batch",
                                           disable=not progress):
            features = extractor(batch.to(device, non_blocking=True), frames)  # (batch, n_mels, frames)
            features = features.to("cpu", dtype)
            for row, (index, length) in enumerate(zip(indices, frames, strict=True)):
                yield index, features[row, :, :length].clone()


def extract_log_mels(
    paths: Sequence[str | Path],
    config: FeatureConfig,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    num_workers: int = 0,
    progress: bool = True,
) -> list[torch.Tensor]:
    """Compute every clip's full log-Mel ((n_mels, frames), see `storage_dtype`) in batches, in RAM.

    For datasets larger than memory use `cache.FeatureCache`, which streams them to disk.
    """
    results: list[torch.Tensor | None] = [None] * len(paths)
    for index, features in iter_log_mels(paths, config, device, batch_size, num_workers, progress):
        results[index] = features
    return results  # type: ignore[return-value]


def as_tensor(log_mel: LogMelSource) -> torch.Tensor:
    """Return a tensor; a NumPy or memory-mapped array is copied into memory first."""
    if isinstance(log_mel, torch.Tensor):
        return log_mel
    array = np.array(log_mel) if isinstance(log_mel, np.memmap) else np.asarray(log_mel)
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def crop_or_pad(log_mel: LogMelSource, start: int, num_frames: int) -> torch.Tensor:
    """Return `num_frames` frames from `start`, padding past the end with the clip's floor.

    Only the crop is read: from a memory-mapped cache entry, the rest stays on disk.
    """
    segment = as_tensor(log_mel[..., start : start + num_frames])
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


def feature_moments(log_mels: Iterable[LogMelSource]) -> torch.Tensor:
    """Return (count, sum, sum of squares) over all values of all clips, in float64.

    Clips are read one at a time (cache entries stream from disk); moments from several
    processes add up to the moments of all their clips.
    """
    moments = torch.zeros(3, dtype=torch.float64)
    for log_mel in log_mels:
        values = as_tensor(log_mel[...]).double()
        moments += torch.stack([torch.tensor(values.numel(), dtype=torch.float64), values.sum(),
                                values.square().sum()])
    return moments


def stats_from_moments(moments: torch.Tensor) -> tuple[float, float]:
    """Return the mean and standard deviation described by `feature_moments` output."""
    count, total, total_sq = moments.tolist()
    mean = total / count
    std = max((total_sq / count - mean * mean) ** 0.5, 1e-6)
    return mean, std


def feature_stats(log_mels: Iterable[LogMelSource]) -> tuple[float, float]:
    """Return the mean and standard deviation over all frames of all clips (float64 sums)."""
    return stats_from_moments(feature_moments(log_mels))


class ModelInput(nn.Module):
    """Standardize a log-Mel batch and shape it like an ImageNet image batch."""

    def __init__(self, image_size: int, mean: float = 0.0, std: float = 1.0,
                 channels_last: bool = False) -> None:
        super().__init__()
        self.image_size = image_size
        self.mean = mean
        self.std = std
        self.channels_last = channels_last  # the layout CUDA convolutions run fastest on

    def normalize(self, features: torch.Tensor) -> torch.Tensor:
        """Map (batch, n_mels, frames) to zero mean and unit variance (training-set stats)."""
        return (features.float() - self.mean) / self.std

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Map normalized (batch, n_mels, frames) to (batch, 3, image_size, image_size)."""
        image = features.unsqueeze(1)  # (batch, 1, n_mels, frames)
        image = torch.nn.functional.interpolate(
            image, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        image = image.expand(-1, 3, -1, -1)  # 3 identical channels: what ImageNet weights expect
        if self.channels_last:
            return image.contiguous(memory_format=torch.channels_last)
        return image
