"""Read audio files into mono waveforms at a chosen sample rate.

`soundfile` decodes (torchaudio.load needs TorchCodec and a system FFmpeg since 2.9);
torchaudio resamples.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from .errors import AudioclsError

# Extensions worth trying to decode; libsndfile reads mp3 from version 1.1 on.
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".au", ".snd", ".aiff",
                              ".aif", ".mp3"})


@dataclass(frozen=True)
class AudioInfo:
    """Describe a decoded clip: what the manifest records and the checks it needs."""

    duration: float  # seconds
    sample_rate: int
    channels: int
    num_samples: int
    peak: float  # largest absolute sample value; 0 means digital silence


def is_audio_path(path: str | Path) -> bool:
    """Return True for a visible file with an audio extension."""
    path = Path(path)
    return not path.name.startswith(".") and path.suffix.lower() in AUDIO_EXTENSIONS


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a file to float32 samples of shape (num_samples, channels) and its sample rate."""
    path = Path(path)
    if not path.exists():
        raise AudioclsError(f"{path}: file not found. Check the path or rebuild the manifest.")
    if path.stat().st_size == 0:
        raise AudioclsError(f"{path}: file is empty (0 bytes). Delete it or download it again.")
    try:
        samples, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as error:
        raise AudioclsError(
            f"{path}: cannot decode audio ({_short(error)}). The file is corrupt, truncated or "
            "not audio: delete it or download it again."
        ) from None
    if samples.shape[0] == 0:
        raise AudioclsError(f"{path}: contains no audio samples. Delete it or download it again.")
    if not np.isfinite(samples).all():
        raise AudioclsError(f"{path}: contains NaN or infinite samples. Re-export the file.")
    return samples, int(sample_rate)


def describe_audio(path: str | Path) -> AudioInfo:
    """Decode a whole file and describe it; raises AudioclsError if it cannot be used."""
    samples, sample_rate = read_audio(path)
    return AudioInfo(
        duration=samples.shape[0] / sample_rate,
        sample_rate=sample_rate,
        channels=samples.shape[1],
        num_samples=samples.shape[0],
        peak=float(np.abs(samples).max()),
    )


def load_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Load a file as a mono float32 waveform of shape (num_samples,) at `sample_rate`."""
    samples, source_rate = read_audio(path)
    waveform = torch.from_numpy(samples.mean(axis=1))  # downmix: average the channels
    return resample(waveform, source_rate, sample_rate)


def resample(waveform: torch.Tensor, source_rate: int, target_rate: int) -> torch.Tensor:
    """Resample the last dimension of `waveform` from `source_rate` to `target_rate`."""
    if source_rate == target_rate:
        return waveform
    return _resampler(source_rate, target_rate)(waveform)


@lru_cache(maxsize=8)
def _resampler(source_rate: int, target_rate: int) -> torchaudio.transforms.Resample:
    """Build a resampler once per rate pair: its filter kernel is reused."""
    return torchaudio.transforms.Resample(source_rate, target_rate)


def fix_length(waveform: torch.Tensor, num_samples: int, offset: int = 0) -> torch.Tensor:
    """Crop `num_samples` starting at `offset`, padding with zeros (silence) past the end."""
    segment = waveform[..., offset : offset + num_samples]
    missing = num_samples - segment.shape[-1]
    return torch.nn.functional.pad(segment, (0, missing)) if missing > 0 else segment


def save_audio(path: str | Path, waveform: torch.Tensor | np.ndarray, sample_rate: int) -> None:
    """Write a mono or (channels, samples) waveform as 16-bit PCM wav."""
    data = waveform.numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
    data = data.T if data.ndim == 2 else data  # soundfile wants (samples, channels)
    sf.write(str(path), data, sample_rate, subtype="PCM_16")


def _short(error: Exception) -> str:
    """Return the first line of an error message."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
