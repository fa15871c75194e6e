"""Read audio files into mono waveforms at a chosen sample rate, block by block.

`soundfile` decodes (torchaudio.load needs TorchCodec and a system FFmpeg since 2.9);
torchaudio resamples. A file is decoded `BLOCK_FRAMES` frames at a time, each block downmixed
and resampled before the next is read, so memory does not grow with a file's length, sample
rate or channel count: `AudioStream` is that loop, and `load_audio` joins its pieces.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from .errors import AudioclsError
from .files import pipe_problem

# Extensions worth trying to decode; libsndfile reads mp3 from version 1.1 on.
AUDIO_EXTENSIONS = frozenset({".wav", ".w64", ".rf64", ".flac", ".ogg", ".oga", ".opus", ".au",
                              ".snd", ".aiff", ".aif", ".caf", ".mp3"})
# Audio formats libsndfile cannot decode: such files are listed as excluded, not skipped unseen.
UNSUPPORTED_EXTENSIONS = frozenset({".m4a", ".m4b", ".mp4", ".aac", ".alac", ".wma", ".ape",
                                    ".amr", ".3gp", ".webm", ".mka", ".ac3", ".mid", ".midi"})
# Frames decoded at a time: 12 s at 22,050 Hz; 6 MB of float32 for a 6-channel file.
BLOCK_FRAMES = 1 << 18
# Sample rates below this are no recording's: a header that says 1 Hz is wrong.
MIN_SAMPLE_RATE = 1000
MIN_SECONDS = 0.1  # shorter clips hold too little sound to classify: excluded
MAX_PEAK = 10.0  # samples beyond ±10 (20 dB over full scale) are no sound at a usable scale
# A RIFF size field a streaming writer leaves as "unknown": the data runs to the end of the file.
UNKNOWN_SIZE = 0xFFFFFFFF


@dataclass(frozen=True)
class AudioInfo:
    """Describe a decoded clip: what the manifest records and the checks it needs."""

    duration: float  # seconds
    sample_rate: int
    channels: int
    num_samples: int
    peak: float  # largest absolute sample value; 0 means digital silence
    mono_peak: float  # largest absolute value once the channels are averaged (stereo may cancel)
    mean_square: float = 0.0  # of the mono waveform: its power, for the loudness gate

    @property
    def loudness_db(self) -> float:
        """Return the mono waveform's RMS level in dBFS, as `abstain.loudness_db` computes it."""
        return 10 * math.log10(max(self.mean_square, 1e-20))


def is_audio_path(path: str | Path) -> bool:
    """Return True for a visible file with an audio extension."""
    path = Path(path)
    return not path.name.startswith(".") and path.suffix.lower() in AUDIO_EXTENSIONS


def unsupported_audio(path: str | Path) -> str | None:
    """Return why a visible file in an audio format we cannot decode is left out, else None."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.name.startswith(".") or suffix not in UNSUPPORTED_EXTENSIONS:
        return None
    return (f"{suffix} is not a format this package decodes: convert it, e.g. "
            f"`ffmpeg -i {path.name} {path.stem}.flac`")


def _check_readable(path: Path) -> None:
    """Raise a clear error for a missing, unreadable or empty file, or a folder."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise AudioclsError(f"{path}: file not found. Check the path or rebuild the manifest.") from None
    except OSError as error:  # e.g. a symbolic link loop
        raise AudioclsError(f"{path}: cannot read file ({error.strerror}). Fix or delete it.") from None
    if path.is_dir():
        raise AudioclsError(f"{path}: is a folder, not an audio file. Name the files in it "
                            "(e.g. folder/*.wav).")
    pipe = pipe_problem(path)
    if pipe:
        raise AudioclsError(f"{path}: {pipe}")
    if size == 0:
        raise AudioclsError(f"{path}: file is empty (0 bytes). Delete it or download it again.")


def _open(path: Path):  # noqa: ANN202 - soundfile.SoundFile
    """Open `path` for decoding, turning decoder and permission errors into AudioclsError."""
    _check_readable(path)
    try:
        with _quiet_stderr(path.suffix.lower() == ".mp3"):
            file = sf.SoundFile(os.fsencode(path))  # bytes: a name that is not UTF-8 opens too
    except PermissionError:
        raise AudioclsError(f"{path}: permission denied. Make it readable (chmod +r) or move it "
                            "out of the data folder.") from None
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as error:
        raise AudioclsError(
            f"{path}: cannot decode audio ({_short(error)}). The file is corrupt, truncated or "
            "not audio: delete it or download it again."
        ) from None
    if file.samplerate < MIN_SAMPLE_RATE:
        file.close()
        raise AudioclsError(f"{path}: sample rate {file.samplerate} Hz is no recording's (at "
                            f"least {MIN_SAMPLE_RATE} Hz): its header is wrong; re-export it.")
    return file


def read_blocks(file: sf.SoundFile, path: Path, block_frames: int = BLOCK_FRAMES
                ) -> Iterator[np.ndarray]:
    """Yield an open file's samples as float32 (frames, channels) blocks of `block_frames` at most.

    Raises AudioclsError for a decoder error, NaN or infinite samples, no samples at all, or a
    wav whose data stops before its header says it ends.
    """
    num_samples = 0
    while True:
        try:
            with _quiet_stderr(file.format == "MP3"):
                samples = _read_float32(file, block_frames)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioclsError(f"{path}: cannot decode audio ({_short(error)}): the file is "
                                "truncated or corrupt; delete it or download it again.") from None
        if samples.shape[0] == 0:
            break
        if not np.isfinite(samples).all():
            raise AudioclsError(f"{path}: contains NaN or infinite samples. Re-export the file.")
        num_samples += samples.shape[0]
        yield samples
    if num_samples == 0:
        raise AudioclsError(f"{path}: contains no audio samples. Delete it or download it again.")
    missing = wav_missing_bytes(path)
    if missing > 0:  # libsndfile quietly reads what is there: a cut download would pass
        raise AudioclsError(f"{path}: truncated: {missing} bytes of audio data promised by its "
                            "header are missing. Download it again.")


def _read_float32(file: sf.SoundFile, frames: int = -1) -> np.ndarray:
    """Read up to `frames` frames (-1: the rest) as float32 (frames, channels) in [-1, 1).

    16-bit PCM (GTZAN's format) is read as integers and scaled here: the same numbers as
    libsndfile's float conversion (x / 32768, exact in float32), about 5 times faster.
    """
    if file.subtype == "PCM_16":
        samples = file.read(frames, dtype="int16", always_2d=True)
        return np.multiply(samples, np.float32(1 / 32768), dtype=np.float32)
    return file.read(frames, dtype="float32", always_2d=True)


class AudioStream:
    """Decode a file block by block into mono pieces at `sample_rate`, describing it on the way.

    Iterating yields float32 tensors (samples,) that, joined, are the whole mono waveform at
    `sample_rate` (None: the file's own rate); only one block is decoded at a time. After the
    last piece, `info` describes the file (its own rate and channels). Raises AudioclsError
    for a file that cannot be used, as `read_blocks` says.
    """

    def __init__(self, path: str | Path, sample_rate: int | None = None,
                 block_frames: int = BLOCK_FRAMES) -> None:
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.block_frames = block_frames
        self.info: AudioInfo | None = None

    def __iter__(self) -> Iterator[torch.Tensor]:
        with _open(self.path) as file:
            source_rate, channels = int(file.samplerate), int(file.channels)
            resampler = StreamingResample(source_rate, self.sample_rate or source_rate)
            num_samples, peak, mono_peak, square_sum = 0, 0.0, 0.0, 0.0
            for samples in read_blocks(file, self.path, self.block_frames):
                num_samples += samples.shape[0]
                peak = max(peak, float(samples.max()), -float(samples.min()))
                # Downmix: average the channels (a mono file's one column needs no arithmetic).
                mono = samples[:, 0] if channels == 1 else samples.mean(axis=1)
                mono_peak = max(mono_peak, float(np.abs(mono).max()))
                # Not np.dot: OpenBLAS's threads would spin beside the feature workers' own
                # (a dot product here cut `make bench`'s first epoch from 71 to 30 clips/s).
                square_sum += float(np.square(mono, dtype=np.float64).sum())
                yield resampler(torch.from_numpy(np.ascontiguousarray(mono)))
            yield resampler.flush()
        self.info = AudioInfo(num_samples / source_rate, source_rate, channels, num_samples, peak,
                              mono_peak, square_sum / max(1, num_samples))


def describe_audio(path: str | Path, block_frames: int = BLOCK_FRAMES) -> AudioInfo:
    """Decode a whole file block by block (memory stays small) and describe it.

    Raises AudioclsError if it cannot be used.
    """
    stream = AudioStream(path, block_frames=block_frames)
    for _ in stream:
        pass
    assert stream.info is not None
    return stream.info


def content_problem(info: AudioInfo) -> str | None:
    """Return why a clip that decodes cannot be used (silence, absurd values, too short), or None."""
    if info.peak == 0.0:
        return "digital silence (every sample is 0)"
    if info.peak > MAX_PEAK:
        return (f"samples reach {info.peak:.3g}, far outside audio's ±1: not sound at a usable "
                "scale; re-export it as audio")
    if info.mono_peak <= info.peak * 1e-4:  # -80 dB: what is left is rounding
        return (f"its {info.channels} channels cancel out when mixed to mono (one is another "
                "inverted): silence to the model; keep one channel")
    if info.duration < MIN_SECONDS:
        return f"too short ({info.duration:.3f} s < {MIN_SECONDS} s)"
    return None


def wav_missing_bytes(path: str | Path) -> int:
    """Return how many bytes of a RIFF/WAVE file's data chunk are missing (0 if whole or not wav).

    A data size of 0xFFFFFFFF (a streaming writer's "unknown") means "to the end of the file".
    """
    with open(path, "rb") as file:
        header = file.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return 0
        size = Path(path).stat().st_size
        while True:
            chunk = file.read(8)
            if len(chunk) < 8:
                return 0
            length = struct.unpack("<I", chunk[4:])[0]
            if chunk[:4] == b"data":
                return 0 if length == UNKNOWN_SIZE else max(0, length - (size - file.tell()))
            file.seek(length + (length & 1), 1)  # chunks are padded to an even length


def load_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Load a file as a mono float32 waveform of shape (num_samples,) at `sample_rate`."""
    return torch.cat(list(AudioStream(path, sample_rate)))


def resample(waveform: torch.Tensor, source_rate: int, target_rate: int) -> torch.Tensor:
    """Resample the last dimension of `waveform` from `source_rate` to `target_rate`."""
    if source_rate == target_rate:
        return waveform
    return _resampler(source_rate, target_rate)(waveform)


@lru_cache(maxsize=8)
def _resampler(source_rate: int, target_rate: int) -> torchaudio.transforms.Resample:
    """Build a resampler once per rate pair: its filter kernel is reused."""
    return torchaudio.transforms.Resample(source_rate, target_rate)


class StreamingResample:
    """Resample a waveform that arrives in pieces: the samples `resample` gives for the whole.

    torchaudio's Resample makes each group of `new` output samples (the rates divided by their
    greatest common divisor: `orig` to `new`) from the `orig` input samples under it and
    `width` on either side. So each piece is resampled together with at least `width` input
    samples before and after it (`context`, whole groups), and only the groups that input
    fully determines are kept; `flush` makes the rest once the input has ended.
    """

    def __init__(self, source_rate: int, target_rate: int) -> None:
        self.resampler = _resampler(source_rate, target_rate) if source_rate != target_rate else None
        divisor = math.gcd(source_rate, target_rate)
        self.orig, self.new = source_rate // divisor, target_rate // divisor
        width = self.resampler.width if self.resampler is not None else 0
        self.context = math.ceil(width / self.orig) * self.orig  # at least `width`, whole groups
        self.width = width
        self.buffer = torch.empty(0)  # input samples from `self.start` on
        self.start = 0  # position in the input of buffer[0]: a whole number of groups
        self.received = 0  # input samples so far
        self.groups = 0  # output groups made so far

    def __call__(self, piece: torch.Tensor) -> torch.Tensor:
        """Take the next input samples (samples,); return the output samples now determined."""
        if self.resampler is None:
            return piece
        self.buffer = torch.cat([self.buffer, piece])
        self.received += piece.shape[0]
        # Group g needs input up to g * orig + orig + width: these groups have all of theirs.
        ready = max(self.groups, (self.received - self.width) // self.orig)
        return self._make(ready, end=None)

    def flush(self) -> torch.Tensor:
        """Return the last output samples, once all the input has come."""
        if self.resampler is None:
            return torch.empty(0)
        total = math.ceil(self.new * self.received / self.orig)  # as resample() of the whole
        return self._make(math.ceil(total / self.new), end=total)

    def _make(self, ready: int, end: int | None) -> torch.Tensor:
        """Resample groups `self.groups` to `ready` (trimmed to output sample `end`), drop old input."""
        first = self.groups
        if ready <= first:
            return torch.empty(0)
        begin = max(0, first * self.orig - self.context)  # whole groups: the same phase
        stop = self.received if end is not None else min(self.received, ready * self.orig + self.context)
        chunk = self.buffer[begin - self.start : stop - self.start]
        out = self.resampler(chunk)  # (samples,) from input position `begin`
        offset = (begin // self.orig) * self.new
        last = (end if end is not None else ready * self.new) - offset
        result = out[first * self.new - offset : last]
        self.groups = ready
        keep = max(0, ready * self.orig - self.context)  # the next call begins here at the earliest
        self.buffer = self.buffer[keep - self.start :]
        self.start = keep
        return result


@contextlib.contextmanager
def _quiet_stderr(active: bool) -> Iterator[None]:
    """Keep a C decoder from printing on stderr while active: mpg123 writes "Note: Illegal
    Audio-MPEG-Header ..." lines there for a damaged mp3, beside the one line that explains."""
    if not active:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _short(error: Exception) -> str:
    """Return the first line of a decoder's message, without its "Error opening '<path>': "."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    text = re.sub(r"^Error opening .*?': ", "", text).rstrip(".")
    # What libsndfile says of an mp3 it cannot parse, although the file is there and readable.
    return text.replace("File does not exist or is not a regular file (possibly a pipe?)",
                        "no audio stream found")
