"""Turn waveforms into log-Mel spectrograms, in batches, and log-Mels into CNN inputs."""

from __future__ import annotations

import os
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


def mel_filterbank(config: FeatureConfig) -> torch.Tensor:
    """Return the (n_freqs, n_mels) triangular filterbank (HTK scale, as torchaudio's default)."""
    return torchaudio.functional.melscale_fbanks(
        n_freqs=config.n_fft // 2 + 1,
        f_min=config.f_min,
        f_max=config.f_max if config.f_max is not None else config.sample_rate / 2,
        n_mels=config.n_mels,
        sample_rate=config.sample_rate,
    )


class LogMel(nn.Module):
    """Compute log-Mel spectrograms (dB) for a batch of waveforms; built once per config.

    The steps of torchaudio's MelSpectrogram and AmplitudeToDB, written out: frames of n_fft
    samples every hop_length samples (the clip reflect-padded by n_fft // 2 at both ends when
    `center`), a Hann window, the power of each frame's FFT, the Mel filterbank, then dB with a
    floor `top_db` below each clip's loudest bin. The power is re^2 + im^2 (torchaudio takes
    |X| then squares it, which costs a square root per bin).
    """

    def __init__(self, config: FeatureConfig, center: bool = True) -> None:
        super().__init__()
        self.config = config
        self.center = center
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)
        self.register_buffer("filterbank", mel_filterbank(config), persistent=False)
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=config.top_db)

    def power(self, waveform: torch.Tensor) -> torch.Tensor:
        """Map (..., samples) to the Mel power (..., n_mels, frames)."""
        if self.center:
            waveform = _reflect_pad(waveform, self.config.n_fft // 2)
        frames = waveform.unfold(-1, self.config.n_fft, self.config.hop_length)
        spectrum = torch.fft.rfft(frames * self.window)  # (..., frames, n_freqs)
        power = spectrum.real.square() + spectrum.imag.square()
        return (power @ self.filterbank).transpose(-1, -2)  # (..., n_mels, frames)

    def forward(self, waveform: torch.Tensor, num_frames: Sequence[int] | None = None
                ) -> torch.Tensor:
        """Map (batch, samples) or (samples,) to (batch, n_mels, frames) or (n_mels, frames).

        `num_frames` gives each clip's own frame count in a padded batch: later frames are
        padding and are kept out of that clip's dB floor.
        """
        power = self.power(waveform)
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


def extraction_workers(device: str | torch.device) -> int:
    """Return the worker processes that decode clips (and, on the CPU, compute their log-Mels).

    On the CPU each worker computes whole batches on one core: clips are independent, so this
    scales with the cores better than splitting each FFT between threads. With a GPU the
    workers only decode. Ranks that torchrun started on one machine share its cores.
    """
    cores = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return cores if torch.device(device).type == "cpu" else min(8, cores - 1)


class _ClipWaveforms(Dataset):
    """Load whole clips as mono waveforms at one sample rate (for batched feature extraction)."""

    def __init__(self, paths: Sequence[str | Path], sample_rate: int) -> None:
        self.paths = list(paths)
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        return index, load_audio(self.paths[index], self.sample_rate)


class _ClipBatch:
    """Collate clips of different lengths into a batch whose STFT frames match each clip's own.

    Each clip is reflect-padded by n_fft // 2 on both sides, as a centered STFT of the clip
    alone would be, then zero-padded to the longest: a clip's features never depend on its
    batch mates, so a cache entry is the same whichever batch computed it. With `extractor`
    the log-Mels are computed right here, in the DataLoader worker that decoded the clips.
    """

    def __init__(self, config: FeatureConfig, extractor: LogMel | None = None) -> None:
        self.config = config
        self.extractor = extractor

    def __call__(self, items: list[tuple[int, torch.Tensor]]
                 ) -> tuple[list[int], list[int], torch.Tensor]:
        """Return clip indices, frame counts and (batch, samples) waveforms or log-Mels."""
        edge = self.config.n_fft // 2
        padded = [_reflect_pad(waveform, edge) for _, waveform in items]
        batch = torch.zeros(len(items), max(w.shape[0] for w in padded))
        for row, waveform in enumerate(padded):
            batch[row, : waveform.shape[0]] = waveform
        frames = [self.config.num_frames(waveform.shape[0]) for _, waveform in items]
        if self.extractor is not None:
            with torch.inference_mode():
                batch = self.extractor(batch, frames).to(storage_dtype(self.config))
        return [index for index, _ in items], frames, batch


def _reflect_pad(waveform: torch.Tensor, edge: int) -> torch.Tensor:
    """Pad (..., samples) by `edge` on both sides by reflection (zeros if too short to reflect)."""
    mode = "reflect" if waveform.shape[-1] > edge else "constant"
    flat = waveform.reshape(-1, 1, waveform.shape[-1])  # F.pad reflects (N, C, L) tensors
    padded = torch.nn.functional.pad(flat, (edge, edge), mode=mode)
    return padded.reshape(*waveform.shape[:-1], padded.shape[-1])


def iter_log_mels(
    paths: Sequence[str | Path],
    config: FeatureConfig,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (position in `paths`, log-Mel (n_mels, frames) on the CPU) for every clip, batch by batch.

    Clips are decoded by DataLoader workers (`extraction_workers` by default). On a GPU they are
    transformed together in batches (32 by default); on the CPU each worker transforms small
    batches (4: large ones only thrash the caches). Each result is trimmed back to its own
    clip's frame count, in `storage_dtype`. Nothing is kept between batches, so memory stays
    bounded however many clips there are.
    """
    device = torch.device(device)
    on_cpu = device.type == "cpu"
    extractor = LogMel(config, center=False).to(device)
    loader = DataLoader(
        _ClipWaveforms(paths, config.sample_rate),
        batch_size=batch_size or (4 if on_cpu else 32),
        num_workers=extraction_workers(device) if num_workers is None else num_workers,
        collate_fn=_ClipBatch(config, extractor if on_cpu else None),
        pin_memory=device.type == "cuda",
    )
    dtype = storage_dtype(config)
    with torch.inference_mode():
        for indices, frames, batch in tqdm(loader, desc="log-Mel", unit="batch",
                                           disable=not progress):
            features = batch if on_cpu else extractor(batch.to(device, non_blocking=True), frames)
            features = features.to("cpu", dtype).numpy()  # (batch, n_mels, frames)
            for row, (index, length) in enumerate(zip(indices, frames, strict=True)):
                # A C-ordered copy of the clip's own frames (NumPy copies on one thread).
                yield index, torch.from_numpy(np.array(features[row, :, :length], order="C"))


def extract_log_mels(
    paths: Sequence[str | Path],
    config: FeatureConfig,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    num_workers: int | None = None,
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
        if self.mean == 0.0 and self.std == 1.0:  # no statistics (normalize=False recipes)
            return features.float()
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
