"""Log-Mel features: torchaudio's transforms, checked against a second computation, per clip
whatever the batch; segments, statistics and the extraction path."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from helpers import tone, write_wav

from audiocls_utils.config import FeatureConfig
from audiocls_utils.features import (
    LogMel,
    MelPower,
    crop_or_pad,
    extract_log_mels,
    feature_stats,
    iter_log_mels,
    mel_filterbank,
    read_segment,
    storage_dtype,
    window_starts,
)

CONFIG = FeatureConfig(n_fft=512, hop_length=128, n_mels=32)


def independent_log_mel(waveform: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Compute one clip's log-Mel without torchaudio's transforms: STFT power, filterbank, dB."""
    stft = torch.stft(waveform.double(), n_fft=config.n_fft, hop_length=config.hop_length,
                      window=torch.hann_window(config.n_fft, dtype=torch.float64), center=True,
                      pad_mode="reflect", return_complex=True)
    power = stft.abs() ** 2  # (freqs, frames)
    filterbank = torchaudio.functional.melscale_fbanks(
        config.n_fft // 2 + 1, config.f_min, config.f_max or config.sample_rate // 2,
        config.n_mels, config.sample_rate).double()  # (freqs, n_mels)
    mel = filterbank.T @ power  # (n_mels, frames)
    if not config.to_db:
        return mel.float()
    db = 10 * torch.log10(mel.clamp_min(1e-10))
    return db.clamp_min(db.max() - config.top_db).float()  # this clip's own floor


def test_log_mel_matches_an_independent_computation() -> None:
    waveform = torch.from_numpy(tone(1000.0, 0.5)) + 0.01 * torch.randn(11025)
    result = LogMel(CONFIG)(waveform)
    assert result.shape == (32, CONFIG.num_frames(11025))
    assert torch.allclose(result, independent_log_mel(waveform, CONFIG), atol=1e-3)
    power = LogMel(replace(CONFIG, to_db=False))(waveform)
    expected = independent_log_mel(waveform, replace(CONFIG, to_db=False))
    assert torch.allclose(power, expected, rtol=1e-4, atol=1e-6 * float(expected.max()))


@pytest.mark.filterwarnings("ignore:At least one mel filterbank has all zero values")
@pytest.mark.parametrize("config", [
    FeatureConfig(),  # GTZAN's: 2048-point FFT, 128 bands
    FeatureConfig(sample_rate=16000, n_fft=400, hop_length=160, n_mels=40, f_min=20.0,
                  f_max=7600.0),
])
def test_mel_power_is_torchaudios_mel_spectrogram(config: FeatureConfig) -> None:
    waveform = torch.randn(2, config.sample_rate // 2)
    expected = torchaudio.transforms.MelSpectrogram(
        sample_rate=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
        n_mels=config.n_mels, f_min=config.f_min, f_max=config.f_max, power=2.0)(waveform)
    assert torch.allclose(MelPower(config)(waveform), expected, rtol=1e-5, atol=1e-7)


def test_a_batch_gives_each_clip_its_own_top_db_floor() -> None:
    loud = torch.from_numpy(tone(500.0, 0.5, amplitude=0.9))
    quiet = torch.from_numpy(tone(500.0, 0.5, amplitude=1e-4)) + 1e-6 * torch.randn(11025)
    batch = LogMel(CONFIG)(torch.stack([loud, quiet]))  # (2, n_mels, frames)
    for row, clip in zip(batch, (loud, quiet), strict=True):
        assert torch.allclose(row, independent_log_mel(clip, CONFIG), atol=1e-3)
    # Had the batch shared one maximum, the quiet clip would be clamped flat.
    assert batch[1].std() > 1.0


@pytest.mark.parametrize("num_workers", [2, 0])
def test_each_clip_gets_its_own_features_in_worker_processes_or_not(
    tmp_path: Path, num_workers: int
) -> None:
    lengths = [0.3, 0.7, 0.5, 0.45]
    amplitudes = [0.5, 1e-3, 0.9, 0.1]
    paths = [write_wav(tmp_path / f"{i}.wav", tone(300.0 * (i + 1), s, amplitude=a))
             for i, (s, a) in enumerate(zip(lengths, amplitudes, strict=True))]
    features = extract_log_mels(paths, CONFIG, num_workers=num_workers, progress=False)
    for path, seconds, result in zip(paths, lengths, features, strict=True):
        alone = LogMel(CONFIG)(torch.from_numpy(sf.read(path, dtype="float32")[0]))
        assert result.dtype == torch.float16 and result.is_contiguous()
        assert result.shape == (32, CONFIG.num_frames(round(seconds * 22050)))
        # Every frame, the last ones too, each clip with its own top_db floor.
        assert torch.allclose(result.float(), alone, atol=0.05)  # float16 rounding


class Finish:
    """Stand in for the feature cache's writer: return what it was given, and where."""

    def __call__(self, index: int, log_mel: torch.Tensor) -> tuple[int, tuple[int, ...], int]:
        return index, tuple(log_mel.shape), os.getpid()


@pytest.mark.parametrize("num_workers", [2, 0])
def test_iter_log_mels_yields_every_clip_once_in_order_through_finish(
    tmp_path: Path, num_workers: int
) -> None:
    paths = [write_wav(tmp_path / f"{i}.wav", tone(200.0 * (i + 1), 0.2)) for i in range(5)]
    results = list(iter_log_mels(paths, CONFIG, num_workers=num_workers, progress=False,
                                 finish=Finish()))
    assert [index for index, _ in results] == list(range(5))
    for index, (position, shape, _) in results:  # (a DataLoader makes tuples into lists)
        assert position == index and tuple(shape) == (32, CONFIG.num_frames(4410))
    # `finish` runs where the log-Mel was made: in the workers when there are some.
    in_workers = {result[2] for _, result in results} != {os.getpid()}
    assert in_workers == (num_workers > 0)


def test_raw_power_features_keep_values_above_float16_range(tmp_path: Path) -> None:
    # The seed's features (no dB): a full-scale tone has Mel power far above float16's 65504.
    config = replace(CONFIG, n_fft=2048, to_db=False, top_db=None)
    assert storage_dtype(config) == torch.float32
    path = write_wav(tmp_path / "loud.wav", tone(1000.0, 0.5, amplitude=0.99))
    result = extract_log_mels([path, path], config, progress=False)[0]
    alone = LogMel(config)(torch.from_numpy(sf.read(path, dtype="float32")[0]))
    assert alone.max() > 65504 and torch.isfinite(result).all()
    assert torch.allclose(result, alone, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:At least one mel filterbank has all zero values")
def test_mel_filterbank_is_the_one_log_mel_applies() -> None:
    config = FeatureConfig(sample_rate=16000, n_fft=400, hop_length=160, n_mels=40, f_min=20.0,
                           f_max=7600.0)
    filterbank = mel_filterbank(config)  # (n_freqs, n_mels)
    assert filterbank.shape == (201, 40)
    assert torch.equal(filterbank, torchaudio.functional.melscale_fbanks(201, 20.0, 7600.0, 40,
                                                                         16000))


def test_crop_or_pad_fills_with_the_clip_floor() -> None:
    features = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert crop_or_pad(features, 1, 2).tolist() == [[2.0, 3.0], [5.0, 6.0]]
    assert crop_or_pad(features, 0, 5).tolist() == [[1, 2, 3, 1, 1], [4, 5, 6, 1, 1]]
    out = torch.full((2, 4), -7.0)
    assert read_segment(features.numpy(), 2, 4, out) is out
    assert out.tolist() == [[3, 1, 1, 1], [6, 1, 1, 1]]


def test_window_starts_cover_the_whole_clip() -> None:
    assert window_starts(10, 4, 2) == [0, 2, 4, 6]
    assert window_starts(11, 4, 4) == [0, 4, 7]  # last window ends at the clip's end
    assert window_starts(3, 4, 2) == [0]


def test_feature_stats_match_numpy() -> None:
    clips = [torch.randn(4, n) * 3 + 2 for n in (5, 9)]
    values = np.concatenate([c.numpy().ravel() for c in clips])
    mean, std = feature_stats(clips)
    assert abs(mean - values.mean()) < 1e-5 and abs(std - values.std()) < 1e-5
