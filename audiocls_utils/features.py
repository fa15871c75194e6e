"""Turn audio files into log-Mel spectrograms with torchaudio's transforms, and crop segments of them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio.transforms as T
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .audio import load_audio
from .config import FeatureConfig

# A log-Mel (n_mels, frames) in memory or on disk: a tensor, a NumPy array, or an entry of the
# feature cache (the engine's `cache.CachedLogMel`, which the core does not import: hence Any).
# All that is asked of it is `.shape`, `.min()` and slicing like `[..., start:stop]`.
LogMelSource = torch.Tensor | np.ndarray | Any


class MelPower(nn.Module):
    """Compute Mel power spectrograms: torchaudio's MelSpectrogram(power=2.0), in its two steps.

    MelSpectrogram is torchaudio's Spectrogram then its MelScale, the power taken as
    abs().pow(2). Here the power is re^2 + im^2: the same numbers (to float rounding) without
    abs()'s square root, which costs more than the FFT itself on a CPU (7 ms against 4 ms for
    a 30 s clip); the first epoch computes every clip.
    """

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__()
        # Hann-windowed frames, centered (the clip reflected by n_fft // 2 at both ends), and
        # their FFT.
        self.spectrogram = T.Spectrogram(n_fft=config.n_fft, hop_length=config.hop_length,
                                         power=None)
        # The triangular Mel filters (HTK scale); `.fb` holds them, (n_freqs, n_mels).
        self.mel_scale = T.MelScale(n_mels=config.n_mels, sample_rate=config.sample_rate,
                                    f_min=config.f_min, f_max=config.f_max,
                                    n_stft=config.n_fft // 2 + 1)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Map (..., samples) to (..., n_mels, frames)."""
        spectrum = self.spectrogram(waveform)  # (..., n_freqs, frames), complex
        power = spectrum.real.square() + spectrum.imag.square()  # |X|^2
        return self.mel_scale(power)  # (..., n_mels, frames)


class LogMel(nn.Module):
    """Compute log-Mel spectrograms in dB (raw Mel power when `config.to_db` is False)."""

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__()
        self.config = config
        self.mel = MelPower(config)
        # 10 * log10(power), floored `top_db` below the maximum.
        self.to_db = T.AmplitudeToDB("power", top_db=config.top_db) if config.to_db else None

    def forward(self, waveform: torch.Tensor, num_frames: Sequence[int] | None = None
                ) -> torch.Tensor:
        """Map (samples,) to (n_mels, frames), or (batch, samples) to (batch, n_mels, frames).

        `num_frames` gives each row's own frame count in a padded batch: the frames after it
        are set to silence, so that they never raise that clip's dB floor.
        """
        power = self.mel(waveform)  # (..., n_mels, frames)
        if num_frames is not None:
            for row, frames in enumerate(num_frames):
                power[row, :, frames:] = 0.0
        if self.to_db is None:
            return power
        # AmplitudeToDB takes one maximum over everything but the last 3 dims: given
        # (batch, n_mels, frames), a quiet clip's floor would depend on its batch mates.
        # A channel axis, (..., 1, n_mels, frames), gives each clip its own floor.
        return self.to_db(power.unsqueeze(-3)).squeeze(-3)


def log_mel(waveform: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Compute the log-Mel spectrogram of one waveform: (samples,) -> (n_mels, frames)."""
    return LogMel(config)(waveform)


def mel_filterbank(config: FeatureConfig) -> torch.Tensor:
    """Return the (n_freqs, n_mels) Mel filterbank that `LogMel` applies."""
    return MelPower(config).mel_scale.fb


def storage_dtype(config: FeatureConfig) -> torch.dtype:
    """Return the dtype features are kept in: float16 for dB, float32 for raw Mel power.

    dB values need no more than float16's 3 significant digits; raw power spans 10 orders of
    magnitude and overflows float16 (largest 65504) on loud clips.
    """
    return torch.float16 if config.to_db else torch.float32


def extraction_workers(device: str | torch.device) -> int:
    """Return how many DataLoader processes decode clips for `iter_log_mels`.

    On a CPU, one per core (each computes its clips' log-Mels too); for a GPU, up to 8, leaving
    a core to feed the GPU. Ranks that torchrun started on one machine share its cores.
    """
    cores = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return cores if torch.device(device).type == "cpu" else min(8, cores - 1)


class ClipLogMels(Dataset):
    """Decode clip `index` into (index, waveform); given a `LogMel`, into (index, its log-Mel),
    and given `finish` too, into (index, finish(index, log-Mel))."""

    def __init__(self, paths: Sequence[str | Path], config: FeatureConfig,
                 log_mel: LogMel | None = None,
                 finish: Callable[[int, torch.Tensor], Any] | None = None) -> None:
        self.paths = list(paths)
        self.config = config
        self.log_mel = log_mel
        self.finish = finish

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        waveform = load_audio(self.paths[index], self.config.sample_rate)  # (samples,)
        if self.log_mel is None:
            return index, waveform
        with torch.no_grad():
            features = self.log_mel(waveform)  # (n_mels, frames)
        features = features.to(storage_dtype(self.config), memory_format=torch.contiguous_format)
        return index, features if self.finish is None else self.finish(index, features)


class PadWaveforms:
    """Collate (index, waveform) items of different lengths into one zero-padded batch.

    A centered STFT reflects a clip's last n_fft // 2 samples past its end; in a batch, zeros
    would stand there instead, and change the clip's last frames. So each clip's end is
    reflected first, then zeros follow: every clip's frames are what they are alone.
    """

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config

    def __call__(self, items: list[tuple[int, torch.Tensor]]
                 ) -> tuple[list[int], list[int], torch.Tensor]:
        """Return the clip indices, their frame counts and the (batch, samples) waveforms."""
        edge = self.config.n_fft // 2
        waveforms = [nn.functional.pad(waveform[None], (0, edge), mode="reflect")[0]
                     for _, waveform in items]  # (samples + edge,) each
        batch = nn.utils.rnn.pad_sequence(waveforms, batch_first=True)  # (batch, samples)
        frames = [self.config.num_frames(waveform.shape[0]) for _, waveform in items]
        return [index for index, _ in items], frames, batch


def iter_log_mels(
    paths: Sequence[str | Path],
    config: FeatureConfig,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    finish: Callable[[int, torch.Tensor], Any] | None = None,
) -> Iterator[tuple[int, Any]]:
    """Yield (position in `paths`, log-Mel (n_mels, frames) on the CPU) for every clip, in order.

    `num_workers` DataLoader processes (`extraction_workers` by default) decode the clips. On a
    CPU each also computes the log-Mel of its clip: clips are independent, so this keeps every
    core busy. On a GPU, or with a `batch_size` above 1, this process computes them in batches
    of `batch_size` clips (32 by default), each trimmed back to its own frames. Log-Mels come
    in `storage_dtype`. `finish(position, log_mel)`, when given, is called on each where it
    was made (in the worker process on a CPU) and its result is yielded instead: the feature
    cache writes its entries there, and only the small entries travel back. Only a few clips
    are in memory at a time, however many there are.
    """
    device = torch.device(device)
    workers = extraction_workers(device) if num_workers is None else num_workers
    workers = min(workers, len(paths) // 2)  # a process takes longer to start than a clip
    if device.type == "cpu" and (batch_size or 1) == 1:
        loader = DataLoader(ClipLogMels(paths, config, LogMel(config), finish), batch_size=None,
                            num_workers=workers)
        for index, result in tqdm(loader, desc="log-Mel", unit="clip", disable=not progress):
            yield index, result
        return
    to_log_mel = LogMel(config).to(device)
    loader = DataLoader(ClipLogMels(paths, config), batch_size=batch_size or 32,
                        num_workers=workers, collate_fn=PadWaveforms(config),
                        pin_memory=device.type == "cuda")
    dtype = storage_dtype(config)
    with torch.no_grad():
        for indices, frames, batch in tqdm(loader, desc="log-Mel", unit="batch",
                                           disable=not progress):
            features = to_log_mel(batch.to(device, non_blocking=True), frames)
            features = features.to("cpu", dtype)  # (batch, n_mels, frames)
            for row, (index, length) in enumerate(zip(indices, frames, strict=True)):
                clip = features[row, :, :length].clone(memory_format=torch.contiguous_format)
                yield index, clip if finish is None else finish(index, clip)


def extract_log_mels(
    paths: Sequence[str | Path],
    config: FeatureConfig,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
) -> list[torch.Tensor]:
    """Compute every clip's full log-Mel ((n_mels, frames), see `storage_dtype`), in RAM.

    For datasets larger than memory use the engine's `cache.FeatureCache`, which streams them
    to disk.
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


def feature_dtype(log_mel: LogMelSource) -> torch.dtype:
    """Return the torch dtype of a tensor, array or cache entry."""
    if isinstance(log_mel, torch.Tensor):
        return log_mel.dtype
    return torch.from_numpy(np.empty(0, log_mel.dtype)).dtype


def read_segment(log_mel: LogMelSource, start: int, num_frames: int, out: torch.Tensor
                 ) -> torch.Tensor:
    """Copy `num_frames` frames from `start` into `out`, padding past the end with the clip's floor.

    Only the crop is read: from a memory-mapped cache entry, the rest stays on disk.
    """
    stop = min(start + num_frames, log_mel.shape[-1])
    length = max(0, stop - start)
    if isinstance(log_mel, torch.Tensor):
        out[..., :length] = log_mel[..., start:stop]
    else:
        target = out[..., :length].numpy()  # a view: what is written lands in `out`
        if hasattr(log_mel, "copy_into"):  # a cache entry, read from its memory map
            log_mel.copy_into(target, (..., slice(start, stop)))
        else:
            np.copyto(target, log_mel[..., start:stop])
    if length < num_frames:
        out[..., length:] = float(log_mel.min())  # the quietest value in the clip stands for silence
    return out


def crop_or_pad(log_mel: LogMelSource, start: int, num_frames: int) -> torch.Tensor:
    """Return `num_frames` frames from `start`, padding past the end with the clip's floor."""
    out = torch.empty((*log_mel.shape[:-1], num_frames), dtype=feature_dtype(log_mel))
    return read_segment(log_mel, start, num_frames, out)


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
