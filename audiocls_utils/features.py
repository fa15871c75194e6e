"""Turn audio files into log-Mel spectrograms with torchaudio's transforms, and crop segments of them.

A file's log-Mel is computed as it is decoded, block by block (`file_log_mel`): memory holds
the log-Mel (80 MB for 2 hours in float16) and one block of audio, never the whole waveform.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torchaudio.transforms as T
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .audio import BLOCK_FRAMES, AudioInfo, AudioStream, content_problem
from .config import FeatureConfig
from .errors import AudioclsError

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

    def __init__(self, config: FeatureConfig, center: bool = True) -> None:
        super().__init__()
        # Hann-windowed frames, centered (the clip reflected by n_fft // 2 at both ends), and
        # their FFT. `center=False` frames the waveform as given (`StreamingLogMel` pads it).
        self.spectrogram = T.Spectrogram(n_fft=config.n_fft, hop_length=config.hop_length,
                                         power=None, center=center)
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

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Map (samples,) to (n_mels, frames), or (batch, samples) to (batch, n_mels, frames)."""
        power = self.mel(waveform)  # (..., n_mels, frames)
        if self.to_db is None:
            return power
        # AmplitudeToDB takes one maximum over everything but the last 3 dims: given
        # (batch, n_mels, frames), a quiet clip's floor would depend on its batch mates.
        # A channel axis, (..., 1, n_mels, frames), gives each clip its own floor.
        return self.to_db(power.unsqueeze(-3)).squeeze(-3)


class StreamingLogMel:
    """Compute one clip's log-Mel from its waveform in pieces: the frames `LogMel` gives whole.

    A centered STFT reflects n_fft // 2 samples at each end of the clip; here the start is
    reflected once enough samples have come, the end by `finish`. Each piece's complete frames
    go through the same Mel filters and dB conversion; only the top_db floor needs the clip's
    loudest frame, so it is applied at the end (after rounding to float16 or before: the same
    numbers, rounding being monotonic). `add` the pieces in order, then call `finish`.
    """

    def __init__(self, config: FeatureConfig, dtype: torch.dtype | None = None) -> None:
        self.config = config
        self.mel = _uncentered_mel_power(config)
        self.to_db = T.AmplitudeToDB("power", top_db=None) if config.to_db else None
        self.dtype = dtype or storage_dtype(config)
        self.edge = config.n_fft // 2
        self.pending = torch.empty(0)  # samples not framed yet (the start padded once started)
        self.next_frame = 0  # where, in `pending`, the next frame begins
        self.started = False
        self.loudest = torch.tensor(-math.inf)  # dB
        self.parts: list[torch.Tensor] = []  # (n_mels, frames) each, in `self.dtype`

    @torch.no_grad()
    def add(self, piece: torch.Tensor) -> None:
        """Take the next samples (samples,) and compute the frames they complete."""
        self.pending = torch.cat([self.pending, piece])
        if not self.started:
            if self.pending.shape[0] <= self.edge:  # reflecting needs n_fft // 2 + 1 samples
                return
            self.pending = torch.cat([self.pending[1 : self.edge + 1].flip(0), self.pending])
            self.started = True
        self._frames()

    @torch.no_grad()
    def end(self) -> bool:
        """Frame the clip's end (reflected); return False if the clip was too short to frame."""
        if not self.started:
            return False
        end = self.pending[-self.edge - 1 : -1].flip(0)  # the clip's end, reflected
        self.pending = torch.cat([self.pending, end])
        self._frames()
        self.started = False  # framed: nothing more to add
        return True

    def take(self) -> torch.Tensor:
        """Return the frames computed since the last call, (n_mels, frames), before the floor."""
        parts, self.parts = self.parts, []
        if not parts:
            return torch.empty(self.config.n_mels, 0, dtype=self.dtype)
        return torch.cat(parts, dim=-1)

    def floor(self) -> float | None:
        """Return the top_db floor (dB) of the frames so far, in `dtype`'s rounding; None if none."""
        if self.to_db is None or self.config.top_db is None:
            return None
        floor = self.loudest - self.config.top_db  # as AmplitudeToDB's top_db, in float32
        return float(floor.to(self.dtype))

    @torch.no_grad()
    def finish(self) -> torch.Tensor | None:
        """Return the log-Mel (n_mels, frames) in `dtype`; None if too short to frame."""
        if not self.end():
            return None
        log_mel = self.take()
        floor = self.floor()
        if floor is not None:
            log_mel.clamp_(min=floor)
        return log_mel

    def _frames(self) -> None:
        """Compute every complete frame of `pending`; keep what later frames and the end need."""
        n_fft, hop = self.config.n_fft, self.config.hop_length
        available = self.pending.shape[0] - self.next_frame
        count = 1 + (available - n_fft) // hop if available >= n_fft else 0
        if count > 0:
            span = self.pending[self.next_frame : self.next_frame + (count - 1) * hop + n_fft]
            power = self.mel(span)  # (n_mels, count)
            if self.to_db is not None:
                power = self.to_db(power)  # dB, no floor yet
                self.loudest = torch.maximum(self.loudest, power.amax())
            self.parts.append(power.to(self.dtype))
            self.next_frame += count * hop
        # Keep the next frame's samples and, for the end's reflection, the last n_fft // 2 + 1.
        drop = max(0, min(self.next_frame, self.pending.shape[0] - self.edge - 1))
        self.pending = self.pending[drop:]
        self.next_frame -= drop


@lru_cache(maxsize=8)
def _uncentered_mel_power(config: FeatureConfig) -> MelPower:
    """Build `StreamingLogMel`'s Mel power once per config: its window and filters are reused."""
    return MelPower(config, center=False)


def log_mel(waveform: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Compute the log-Mel spectrogram of one waveform: (samples,) -> (n_mels, frames)."""
    return LogMel(config)(waveform)


def file_log_mel(path: str | Path, config: FeatureConfig, dtype: torch.dtype | None = None,
                 block_frames: int = BLOCK_FRAMES) -> torch.Tensor:
    """Compute a file's log-Mel (n_mels, frames), decoding it block by block.

    The frames are those of `LogMel(config)` on the whole waveform (to float rounding), in
    `dtype` (`storage_dtype(config)` by default); the waveform is never held whole. Raises
    AudioclsError for a file that cannot be used.
    """
    log_mel, _ = described_log_mel(path, config, dtype, block_frames)
    if log_mel is None:
        raise AudioclsError(f"{path}: {too_short_to_frame(config)}")
    return log_mel


def described_log_mel(path: str | Path, config: FeatureConfig, dtype: torch.dtype | None = None,
                      block_frames: int = BLOCK_FRAMES) -> tuple[torch.Tensor | None, AudioInfo]:
    """Decode a file once, block by block: return its log-Mel as `file_log_mel` computes it (None
    when too short to frame) and its description (duration, peak, ...) as `describe_audio` gives it.
    """
    stream, audio = StreamingLogMel(config, dtype), AudioStream(path, config.sample_rate, block_frames)
    for piece in audio:
        stream.add(piece)
    assert audio.info is not None  # set once the last piece is out
    return stream.finish(), audio.info


def too_short_to_frame(config: FeatureConfig) -> str:
    """Say why a clip shorter than one STFT frame has no log-Mel."""
    return (f"too short to compute a log-Mel (fewer than {config.n_fft // 2 + 1} samples at "
            f"{config.sample_rate} Hz). Leave it out.")


class FileScan(NamedTuple):
    """What a first pass over a file finds: its top_db floor, whether it is long enough to frame,
    its description, and its whole log-Mel (floor applied) when it was short enough to keep."""

    floor: float | None
    framed: bool
    info: AudioInfo
    log_mel: torch.Tensor | None


def scan_file(path: str | Path, config: FeatureConfig, dtype: torch.dtype | None = None,
              keep_frames: int = 0, block_frames: int = BLOCK_FRAMES) -> FileScan:
    """Decode a file once, keeping its frames only while there are at most `keep_frames`."""
    stream, audio = StreamingLogMel(config, dtype), AudioStream(path, config.sample_rate, block_frames)
    parts: list[torch.Tensor] = []
    kept = 0  # frames computed so far
    for piece in audio:
        stream.add(piece)
        kept = _hold(parts, stream.take(), kept, keep_frames)
    framed = stream.end()
    kept = _hold(parts, stream.take(), kept, keep_frames)
    assert audio.info is not None  # set once the last piece is out
    floor = stream.floor()
    log_mel = torch.cat(parts, dim=-1) if framed and kept <= keep_frames else None
    if log_mel is not None and floor is not None:
        log_mel.clamp_(min=floor)
    return FileScan(floor, bool(framed), audio.info, log_mel)


def _hold(parts: list[torch.Tensor], frames: torch.Tensor, kept: int, keep_frames: int) -> int:
    """Append `frames` to `parts` while all fit in `keep_frames` (else empty it); return the count."""
    kept += frames.shape[-1]
    if kept <= keep_frames:
        parts.append(frames)
    else:
        parts.clear()
    return kept


def stream_windows(pieces: Iterable[torch.Tensor], config: FeatureConfig, num_frames: int,
                   hop_frames: int, floor: float | None, dtype: torch.dtype | None = None
                   ) -> Iterator[torch.Tensor]:
    """Yield the windows (n_mels, num_frames) that `window_starts` gives on the waveform `pieces`
    make, as `crop_or_pad` cuts them from `file_log_mel`'s log-Mel, holding only a window or two.

    `floor` is the clip's top_db floor (`scan_file`): it needs the whole clip, hence a first pass.
    """
    stream = StreamingLogMel(config, dtype)
    held = torch.empty(config.n_mels, 0, dtype=stream.dtype)  # frames from `offset` on
    offset = total = start = 0  # `start`: the next window's first frame
    last = None  # the first frame of the last window yielded
    for piece in itertools.chain(pieces, [None]):  # None: the clip's end
        if piece is not None:
            stream.add(piece)
        else:
            stream.end()
        frames = stream.take()
        if floor is not None:
            frames.clamp_(min=floor)
        held, total = torch.cat([held, frames], dim=-1), total + frames.shape[-1]
        while start + num_frames <= total:
            yield held[..., start - offset : start - offset + num_frames].clone()
            last, start = start, start + max(1, hop_frames)
        keep = max(offset, min(start, total - num_frames))  # the last window may end at the end
        held, offset = held[..., keep - offset :], keep
    if total == 0:
        return
    if last is None:  # shorter than a window: padded with the clip's floor
        yield crop_or_pad(held, 0, num_frames)
    elif last + num_frames < total:  # the last window ends at the clip's end
        yield held[..., total - num_frames - offset : total - offset].clone()


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
    """Return how many DataLoader processes compute log-Mels for `iter_log_mels`.

    On a CPU, one per core; for a GPU, up to 8, leaving a core to feed the GPU. Ranks that
    torchrun started on one machine share its cores.
    """
    cores = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return cores if torch.device(device).type == "cpu" else min(8, cores - 1)


class ClipLogMels(Dataset):
    """Compute clip `index`'s log-Mel as (index, log-Mel), or (index, finish(index, log-Mel))."""

    def __init__(self, paths: Sequence[str | Path], config: FeatureConfig,
                 finish: Callable[[int, torch.Tensor], Any] | None = None) -> None:
        self.paths = list(paths)
        self.config = config
        self.finish = finish

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        try:
            features = checked_log_mel(self.paths[index], self.config)  # (n_mels, frames)
        except AudioclsError as error:  # raised in the main process, not as a worker's traceback
            return index, ClipProblem(str(error))
        return index, features if self.finish is None else self.finish(index, features)


@dataclass(frozen=True)
class ClipProblem:
    """Why a clip has no log-Mel: what a feature worker sends back instead of one."""

    message: str


def checked_log_mel(path: str | Path, config: FeatureConfig) -> torch.Tensor:
    """Compute a file's log-Mel as `file_log_mel` does, refusing content that is not sound as
    `audiocls prepare` does (a manifest written by hand was never checked)."""
    log_mel, info = described_log_mel(path, config)
    problem = content_problem(info) or (None if log_mel is not None else too_short_to_frame(config))
    if problem:
        raise AudioclsError(f"{path}: {problem}")
    return log_mel


def iter_log_mels(
    paths: Sequence[str | Path],
    config: FeatureConfig,
    device: str | torch.device = "cpu",
    num_workers: int | None = None,
    progress: bool = True,
    finish: Callable[[int, torch.Tensor], Any] | None = None,
) -> Iterator[tuple[int, Any]]:
    """Yield (position in `paths`, log-Mel (n_mels, frames) on the CPU) for every clip, in order.

    `num_workers` DataLoader processes (`extraction_workers(device)` by default) each decode a
    clip and compute its log-Mel block by block (`file_log_mel`): clips are independent, so
    this keeps every core busy, and memory holds a few log-Mels and one block of audio per
    process, however long the clips. Log-Mels come in `storage_dtype`. `finish(position,
    log_mel)`, when given, is called on each where it was made (in the worker process) and
    its result is yielded instead: the feature cache writes its entries there, and only the
    small entries travel back.
    """
    workers = extraction_workers(device) if num_workers is None else num_workers
    workers = min(workers, len(paths) // 2)  # a process takes longer to start than a clip
    loader = DataLoader(ClipLogMels(paths, config, finish), batch_size=None, num_workers=workers)
    for index, item in tqdm(loader, desc="log-Mel", unit="clip", disable=not progress):
        if isinstance(item, ClipProblem):
            raise AudioclsError(f"{item.message.rstrip('.')}; leave it out of the manifest "
                                "(`audiocls prepare` does) and run again")
        yield index, item


def extract_log_mels(
    paths: Sequence[str | Path],
    config: FeatureConfig,
    device: str | torch.device = "cpu",
    num_workers: int | None = None,
    progress: bool = True,
) -> list[torch.Tensor]:
    """Compute every clip's full log-Mel ((n_mels, frames), see `storage_dtype`), in RAM.

    For datasets larger than memory use the engine's `cache.FeatureCache`, which streams them
    to disk.
    """
    results: list[torch.Tensor | None] = [None] * len(paths)
    for index, features in iter_log_mels(paths, config, device, num_workers, progress):
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
