"""Turn waveforms into log-Mel spectrograms, in batches, and log-Mels into CNN inputs."""

from __future__ import annotations

import ctypes
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

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

CPU_FRAMES = 256  # STFT frames transformed at once on a CPU (see LogMel.power)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)

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


def filterbank_bands(filterbank: torch.Tensor, size: int = 16) -> list[tuple[int, int, int, int]]:
    """Split a (n_freqs, n_mels) filterbank into blocks of `size` Mel bands.

    Return (first bin, end bin, first band, end band) per block: the bins outside a block's
    range have zero weight in all its bands.
    """
    blocks = []
    for first in range(0, filterbank.shape[1], size):
        last = min(first + size, filterbank.shape[1])
        bins = (filterbank[:, first:last] != 0).any(dim=1).nonzero().flatten().tolist()
        blocks.append((bins[0], bins[-1] + 1, first, last) if bins else (0, 0, first, last))
    return blocks


class LogMel(nn.Module):
    """Compute log-Mel spectrograms (dB) for a batch of waveforms; built once per config.

    The steps of torchaudio's MelSpectrogram and AmplitudeToDB, written out: frames of n_fft
    samples every hop_length samples (the clip reflect-padded by n_fft // 2 at both ends when
    `center`), a Hann window, the power of each frame's FFT, the Mel filterbank, then dB with a
    floor `top_db` below each clip's loudest bin. Two shortcuts give the same numbers (to float
    rounding) in about half the time on a CPU: the power is re^2 + im^2, squared in place, with
    no square root; and since each triangular filter covers a few neighbouring FFT bins, the
    filterbank is applied block by block (16 Mel bands and only the bins they touch), skipping
    the 98% of its weights that are zero. A GPU does the one dense product instead.
    """

    def __init__(self, config: FeatureConfig, center: bool = True) -> None:
        super().__init__()
        self.config = config
        self.center = center
        filterbank = mel_filterbank(config)  # (n_freqs, n_mels)
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)
        # Rows repeated: row 2k weighs re^2 and row 2k+1 im^2 of bin k, as view_as_real lays them.
        self.register_buffer("weights", filterbank.repeat_interleave(2, dim=0), persistent=False)
        self.bands = filterbank_bands(filterbank)
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=config.top_db)

    def power(self, waveform: torch.Tensor) -> torch.Tensor:
        """Map (..., samples) to the Mel power (..., n_mels, frames)."""
        if self.center:
            waveform = _reflect_pad(waveform, self.config.n_fft // 2)
        frames = waveform.unfold(-1, self.config.n_fft, self.config.hop_length)  # a view
        if frames.device.type != "cpu":
            return self._mel_power(frames).transpose(-1, -2)
        # On a CPU, a few hundred frames at a time: the temporaries stay small enough to be
        # reused from the heap (and the CPU's caches) instead of fresh pages for every clip,
        # which doubled the time per clip in a worker process.
        chunks = [self._mel_power(frames[..., start : start + CPU_FRAMES, :]).transpose(-1, -2)
                  for start in range(0, frames.shape[-2], CPU_FRAMES)]
        return torch.cat(chunks, dim=-1)  # (..., n_mels, frames), contiguous

    def _mel_power(self, frames: torch.Tensor) -> torch.Tensor:
        """Map (..., frames, n_fft) unwindowed frames to the Mel power (..., frames, n_mels)."""
        spectrum = torch.fft.rfft(frames * self.window)  # (..., frames, n_freqs), complex
        squares = torch.view_as_real(spectrum).square_().flatten(-2)  # (..., frames, 2 n_freqs)
        if squares.device.type != "cpu":
            return squares @ self.weights
        return torch.cat([squares[..., 2 * lo : 2 * hi] @ self.weights[2 * lo : 2 * hi, first:last]
                          for lo, hi, first, last in self.bands], dim=-1)

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
    """Return how many clips are decoded at once: threads that also transform on a CPU, worker
    processes that only decode for a GPU. Ranks that torchrun started on one machine share its
    cores."""
    cores = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return cores if torch.device(device).type == "cpu" else min(8, cores - 1)


def keep_freed_memory() -> None:
    """Make glibc keep freed memory in this process for reuse, rather than return it at once.

    Each clip needs several MB of temporaries. By default glibc hands such blocks back to the
    kernel when they are freed, and the next clip gets fresh pages that the kernel must zero
    first: on this course's 2-core virtual machine that cost a third of the extraction time.
    Afterwards the process keeps up to 128 MB of freed memory for later use. Does nothing
    where the C library is not glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # blocks under 32 MB (glibc's maximum) from the heap
    mallopt(_M_TRIM_THRESHOLD, 128 << 20)  # return memory once 128 MB of it is free


class _ClipLogMels:
    """Decode and transform one whole clip per call (on the CPU, in the calling thread).

    With `finish`, a call returns (index, finish(index, log_mel)) instead of (index, log_mel):
    the feature cache writes its entries there, in parallel.
    """

    def __init__(self, paths: Sequence[str | Path], config: FeatureConfig,
                 finish: Callable[[int, torch.Tensor], Any] | None = None) -> None:
        self.paths = list(paths)
        self.config = config
        self.finish = finish
        self.extractor = LogMel(config)

    def __len__(self) -> int:
        return len(self.paths)

    def __call__(self, index: int) -> tuple[int, Any]:
        with torch.no_grad():
            waveform = load_audio(self.paths[index], self.config.sample_rate)
            log_mel = self.extractor(waveform).to(storage_dtype(self.config),
                                                  memory_format=torch.contiguous_format)
        return index, log_mel if self.finish is None else self.finish(index, log_mel)


def _in_threads(clips: _ClipLogMels, threads: int) -> Iterator[tuple[int, Any]]:
    """Yield clips(0), clips(1), ... computed by `threads` threads, a few clips ahead.

    PyTorch, NumPy and libsndfile release Python's GIL while they compute, so threads run in
    parallel, with none of worker processes' costs: no start-up, no copy-on-write of this
    process's memory, no results copied between processes. Each thread takes one core: torch's
    own thread pool is set to one thread meanwhile, then restored.
    """
    if threads <= 1:
        yield from map(clips, range(len(clips)))  # torch's thread pool splits each clip
        return
    keep_freed_memory()
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(threads) as pool:
            pending: deque[Future] = deque()
            for index in range(len(clips)):
                pending.append(pool.submit(clips, index))
                if len(pending) > 2 * threads:  # bounded: memory does not grow with the clips
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
    finally:
        torch.set_num_threads(previous)


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
    batch mates, so a cache entry is the same whichever batch computed it.
    """

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config

    def __call__(self, items: list[tuple[int, torch.Tensor]]
                 ) -> tuple[list[int], list[int], torch.Tensor]:
        """Return clip indices, frame counts and (batch, samples) padded waveforms."""
        edge = self.config.n_fft // 2
        padded = [_reflect_pad(waveform, edge) for _, waveform in items]
        batch = torch.zeros(len(items), max(w.shape[0] for w in padded))
        for row, waveform in enumerate(padded):
            batch[row, : waveform.shape[0]] = waveform
        frames = [self.config.num_frames(waveform.shape[0]) for _, waveform in items]
        return [index for index, _ in items], frames, batch


def _reflect_pad(waveform: torch.Tensor, edge: int) -> torch.Tensor:
    """Pad (..., samples) by `edge` on both sides by reflection (zeros if too short to reflect)."""
    if waveform.shape[-1] <= edge:
        return torch.nn.functional.pad(waveform, (edge, edge))
    # What F.pad(mode="reflect") does, in a third of its time for a long clip.
    return torch.cat([waveform[..., 1 : edge + 1].flip(-1), waveform,
                      waveform[..., -edge - 1 : -1].flip(-1)], dim=-1)


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

    On a CPU, `num_workers` threads (`extraction_workers` by default: one per core) each decode
    and transform whole clips: clips are independent, so this uses the cores better than
    splitting each FFT between threads. On a GPU, `num_workers` DataLoader processes decode
    and the GPU transforms batches of `batch_size` clips (32 by default; a `batch_size` above 1
    batches on a CPU too), each trimmed back to its own frame count. Results are in
    `storage_dtype`. `finish(position, log_mel)`, when given, runs in the thread that made the
    log-Mel and its result is yielded instead. Memory stays bounded however many clips there
    are: only a few are in flight at a time.
    """
    device = torch.device(device)
    workers = extraction_workers(device) if num_workers is None else num_workers
    if device.type == "cpu" and (batch_size or 1) == 1:
        clips = _ClipLogMels(paths, config, finish)
        yield from tqdm(_in_threads(clips, workers), total=len(clips), desc="log-Mel",
                        unit="clip", disable=not progress)
        return
    extractor = LogMel(config, center=False).to(device)
    loader = DataLoader(_ClipWaveforms(paths, config.sample_rate), batch_size=batch_size or 32,
                        num_workers=workers, collate_fn=_ClipBatch(config),
                        pin_memory=device.type == "cuda")
    dtype = storage_dtype(config)
    with torch.inference_mode():
        for indices, frames, batch in tqdm(loader, desc="log-Mel", unit="batch",
                                           disable=not progress):
            features = extractor(batch.to(device, non_blocking=True), frames)
            features = features.to("cpu", dtype).numpy()  # (batch, n_mels, frames)
            for row, (index, length) in enumerate(zip(indices, frames, strict=True)):
                # A C-ordered copy of the clip's own frames (NumPy copies on one thread).
                log_mel = torch.from_numpy(np.array(features[row, :, :length], order="C"))
                yield index, log_mel if finish is None else finish(index, log_mel)


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
