"""Decoding in blocks: resampling and log-Mels equal the whole-file results, and no read, buffer
or prediction ever holds more than a block of a file's audio."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import write_wav

from audiocls_utils import audio
from audiocls_utils.audio import StreamingResample, describe_audio, resample
from audiocls_utils.config import FeatureConfig
from audiocls_utils.features import (
    LogMel,
    StreamingLogMel,
    extract_log_mels,
    file_log_mel,
    storage_dtype,
)

CONFIG = FeatureConfig(n_fft=512, hop_length=128, n_mels=32)


def _noisy_chirp(num_samples: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Return float32 (samples, channels): a rising tone per channel over a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples)[:, None] / num_samples
    wave = 0.4 * np.sin(2 * np.pi * (50 + 400 * t) * t * (1 + np.arange(channels)))
    return (wave + 0.02 * rng.standard_normal((num_samples, channels))).astype(np.float32)


def _whole_file_log_mel(path: Path, config: FeatureConfig) -> torch.Tensor:
    """Compute a file's log-Mel the simple way: read it whole, average channels, resample, LogMel."""
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    waveform = resample(torch.from_numpy(samples.mean(axis=1)), rate, config.sample_rate)
    return LogMel(config)(waveform)


@pytest.mark.parametrize("source_rate,target_rate", [(96000, 22050), (44100, 22050),
                                                     (8000, 22050), (22050, 16000)])
@pytest.mark.parametrize("piece", [999, 7919, 40_000])
def test_resampling_in_pieces_matches_resampling_the_whole(source_rate: int, target_rate: int,
                                                           piece: int) -> None:
    waveform = torch.from_numpy(_noisy_chirp(source_rate + 137)[:, 0])
    whole = resample(waveform, source_rate, target_rate)
    stream = StreamingResample(source_rate, target_rate)
    pieces = [stream(part) for part in waveform.split(piece)] + [stream.flush()]
    joined = torch.cat(pieces)
    assert joined.shape == whole.shape
    assert float((joined - whole).abs().max()) < 1e-5  # measured: 7e-7 at most
    # What it keeps between pieces is a few filter widths, not the input so far.
    assert stream.buffer.shape[0] <= 2 * stream.context + stream.orig


@pytest.mark.parametrize("rate,channels", [(22050, 1), (44100, 2), (96000, 6)])
@pytest.mark.parametrize("config", [CONFIG, FeatureConfig(),
                                    replace(CONFIG, to_db=False, top_db=None)])
def test_a_log_mel_computed_block_by_block_equals_the_whole_files(
    tmp_path: Path, rate: int, channels: int, config: FeatureConfig
) -> None:
    path = write_wav(tmp_path / "clip.wav", _noisy_chirp(int(1.3 * rate), channels), rate,
                     subtype="FLOAT")
    expected = _whole_file_log_mel(path, config)
    block_frames = 4000  # the clip spans 7 or more blocks
    result = file_log_mel(path, config, torch.float32, block_frames=block_frames)
    assert result.shape == expected.shape == (config.n_mels, config.num_frames(
        int(np.ceil(1.3 * rate * config.sample_rate / rate))))
    if config.to_db:
        assert torch.allclose(result, expected, atol=1e-3)  # dB: measured 2e-4 at most
    else:
        assert torch.allclose(result, expected, rtol=1e-4, atol=1e-6 * float(expected.max()))
    stored = file_log_mel(path, config, block_frames=block_frames)  # in storage_dtype
    assert stored.dtype == storage_dtype(config)
    assert torch.allclose(stored.float(), expected, atol=0.05, rtol=1e-3)  # float16 rounding


def test_the_top_db_floor_is_the_whole_clips(tmp_path: Path) -> None:
    # Loud first second, then near-silence: a block of the quiet part alone would have its own,
    # much lower, floor; the clip's floor comes from its loudest frame wherever that is.
    loud = _noisy_chirp(22050)[:, 0]
    quiet = 1e-6 * np.random.default_rng(1).standard_normal(5 * 22050).astype(np.float32)
    path = write_wav(tmp_path / "fade.wav", np.concatenate([loud, quiet]), subtype="FLOAT")
    result = file_log_mel(path, CONFIG, torch.float32, block_frames=4096)
    expected = _whole_file_log_mel(path, CONFIG)
    assert torch.allclose(result, expected, atol=1e-3)
    assert float(result.min()) == pytest.approx(float(result.max()) - CONFIG.top_db, abs=1e-3)


def test_a_clip_shorter_than_half_an_fft_is_refused_in_one_line(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "tiny.wav", _noisy_chirp(200))  # 200 samples < 512 // 2 + 1
    stream = StreamingLogMel(CONFIG)
    stream.add(torch.zeros(200))
    assert stream.finish() is None
    with pytest.raises(audio.AudioclsError, match=r"tiny\.wav: too short to compute a log-Mel"):
        file_log_mel(path, CONFIG)


class ReadSizes:
    """Record how many frames each soundfile read asks for, and read them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        original = sf.SoundFile.read

        def read(file: sf.SoundFile, frames: int = -1, *args: object, **kwargs: object):
            self.sizes.append(frames)
            return original(file, frames, *args, **kwargs)

        monkeypatch.setattr(sf.SoundFile, "read", read)


@pytest.fixture
def long_clip(tmp_path: Path) -> Path:
    """A 50 s stereo 16-bit clip at 44.1 kHz: 2.2 million frames, 9 blocks."""
    path = tmp_path / "long.wav"
    with sf.SoundFile(str(path), "w", 44100, 2, subtype="PCM_16") as file:
        for _ in range(5):
            file.write(_noisy_chirp(441000, 2))
    return path


def test_no_read_asks_for_more_than_a_block(long_clip: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    reads = ReadSizes(monkeypatch)
    info = describe_audio(long_clip)
    assert info.num_samples == 2_205_000 and info.channels == 2
    log_mel = extract_log_mels([long_clip], FeatureConfig(), num_workers=0, progress=False)[0]
    assert log_mel.shape == (128, FeatureConfig().num_frames(1_102_500))
    # Never a whole-file read (-1): every read is one block at most, and there are many.
    assert reads.sizes and all(0 < size <= audio.BLOCK_FRAMES for size in reads.sizes)
    assert len(reads.sizes) >= 2 * (2_205_000 // audio.BLOCK_FRAMES)


def test_buffers_stay_a_block_long_however_long_the_clip(long_clip: Path) -> None:
    largest = {"pending": 0, "piece": 0}
    stream = StreamingLogMel(FeatureConfig())
    for piece in audio.AudioStream(long_clip, 22050):
        largest["piece"] = max(largest["piece"], piece.shape[0])
        stream.add(piece)
        largest["pending"] = max(largest["pending"], stream.pending.shape[0])
    assert stream.finish().shape[-1] == FeatureConfig().num_frames(1_102_500)
    # A block of 2**18 frames at 44.1 kHz is 2**17 samples at 22,050 Hz (plus the filter's reach).
    assert largest["piece"] <= audio.BLOCK_FRAMES // 2 + 2048
    assert largest["pending"] <= largest["piece"] + FeatureConfig().n_fft


@pytest.mark.parametrize("seconds", [0.2, 20 * 128 / 22050, 1.0, 2.3])
@pytest.mark.parametrize("piece", [4096, 50_000])
def test_streamed_windows_are_the_windows_of_the_whole_log_mel(tmp_path: Path, seconds: float,
                                                               piece: int) -> None:
    from audiocls_utils.audio import AudioStream
    from audiocls_utils.data import SegmentDataset
    from audiocls_utils.features import scan_file, stream_windows

    samples = _noisy_chirp(round(seconds * 22050))
    samples[: len(samples) // 3] *= 1e-5  # a quiet start: the top_db floor bites there
    path = write_wav(tmp_path / "clip.wav", samples, subtype="FLOAT")
    whole = file_log_mel(path, CONFIG, torch.float32)
    expected = SegmentDataset([whole], [0], 40, train=False, hop_frames=15)
    floor, framed, _, kept = scan_file(path, CONFIG, torch.float32, keep_frames=10**6,
                                       block_frames=piece)
    assert framed and floor == float(whole.min())  # known before any window
    assert torch.equal(kept, whole)  # a short file's log-Mel is kept: one decode
    assert scan_file(path, CONFIG, torch.float32, keep_frames=whole.shape[-1] - 1).log_mel is None
    windows = list(stream_windows(AudioStream(path, CONFIG.sample_rate, piece), CONFIG, 40, 15,
                                  floor, torch.float32))
    assert len(windows) == len(expected) >= 1
    for window, (segment, _, _) in zip(windows, expected, strict=True):
        assert torch.equal(window, segment)


def test_predictor_streams_the_probabilities_it_gives_for_the_whole_log_mel(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers import untrained_bundle

    from audiocls_utils import predict
    from audiocls_utils.predict import Predictor

    monkeypatch.setattr(predict, "KEEP_SECONDS", 0.5)  # longer files stream their windows

    predictor = Predictor(untrained_bundle(), device="cpu")
    feature = predictor.recipe.feature
    samples = _noisy_chirp(3 * 22050 + 77)  # 3 s: 9 windows
    samples[: len(samples) // 3] *= 1e-5  # a quiet first second: the top_db floor bites there
    path = write_wav(tmp_path / "clip.wav", samples, subtype="FLOAT")
    whole = file_log_mel(path, feature, torch.float32)
    assert len(range(0, whole.shape[-1] - 20 + 1, predictor.hop_frames)) >= 8
    expected = predictor.clip_probabilities(whole)
    assert predictor.scan(path).log_mel is None
    streamed = predictor.probabilities([path])[0]
    assert torch.allclose(streamed, expected, atol=1e-6)
    [result] = predictor.predict([path], top_k=1)
    assert result["top"][0]["probability"] == round(float(expected.max()), 4)
