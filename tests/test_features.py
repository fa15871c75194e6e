"""Log-Mel features: the same numbers as a hand computation, per clip whatever the batch."""

from __future__ import annotations

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
    ModelInput,
    _reflect_pad,
    crop_or_pad,
    extract_log_mels,
    feature_stats,
    mel_filterbank,
    window_starts,
)

CONFIG = FeatureConfig(n_fft=512, hop_length=128, n_mels=32)


def test_log_mel_matches_a_hand_computation() -> None:
    waveform = torch.from_numpy(tone(1000.0, 0.5)) + 0.01 * torch.randn(11025)
    stft = torch.stft(waveform, n_fft=512, hop_length=128, window=torch.hann_window(512),
                      center=True, pad_mode="reflect", return_complex=True)
    power = stft.abs() ** 2  # (freqs, frames)
    filterbank = torchaudio.functional.melscale_fbanks(257, 0.0, 11025.0, 32, 22050)
    mel = filterbank.T @ power
    expected = 10 * torch.log10(mel.clamp_min(1e-10))
    expected = expected.clamp_min(expected.max() - 80)
    result = LogMel(CONFIG)(waveform)
    assert result.shape == (32, CONFIG.num_frames(11025))
    assert torch.allclose(result, expected, atol=1e-3)


@pytest.mark.filterwarnings("ignore:At least one mel filterbank has all zero values")
@pytest.mark.parametrize("config", [
    FeatureConfig(),  # GTZAN's: 2048-point FFT, 128 bands
    FeatureConfig(n_fft=256, hop_length=64, n_mels=128),  # more bands than bins: empty filters
    FeatureConfig(sample_rate=16000, n_fft=400, hop_length=160, n_mels=40, f_min=20.0,
                  f_max=7600.0),
])
def test_block_filterbank_equals_the_dense_product(config: FeatureConfig) -> None:
    waveform = torch.randn(2, config.sample_rate // 2)
    extractor = LogMel(replace(config, to_db=False))
    padded = torch.nn.functional.pad(waveform.unsqueeze(1), (config.n_fft // 2,) * 2,
                                     mode="reflect").squeeze(1)
    assert torch.equal(_reflect_pad(waveform, config.n_fft // 2), padded)
    frames = padded.unfold(-1, config.n_fft, config.hop_length) * extractor.window
    dense = (torch.fft.rfft(frames).abs().square() @ mel_filterbank(config)).transpose(-1, -2)
    assert torch.allclose(extractor(waveform), dense, rtol=1e-4, atol=1e-6 * dense.max())


def test_batch_gives_each_clip_its_own_top_db_floor() -> None:
    loud = torch.from_numpy(tone(500.0, 0.5, amplitude=0.9))
    quiet = torch.from_numpy(tone(500.0, 0.5, amplitude=1e-4)) + 1e-6 * torch.randn(11025)
    extractor = LogMel(CONFIG)
    batch = extractor(torch.stack([loud, quiet]))
    assert torch.allclose(batch[1], extractor(quiet), atol=1e-4)
    # Had the batch shared one maximum, the quiet clip would be clamped flat.
    assert batch[1].std() > 1.0


def test_extract_log_mels_equals_one_clip_at_a_time(tmp_path: Path) -> None:
    lengths = [0.3, 0.7, 0.5]
    paths = [write_wav(tmp_path / f"{i}.wav", tone(300.0 * (i + 1), s)) for i, s in
             enumerate(lengths)]
    features = extract_log_mels(paths, CONFIG, batch_size=3, progress=False)
    extractor = LogMel(CONFIG)
    for path, seconds, result in zip(paths, lengths, features, strict=True):
        import soundfile as sf

        alone = extractor(torch.from_numpy(sf.read(path, dtype="float32")[0]))
        assert result.dtype == torch.float16
        assert result.shape == (32, CONFIG.num_frames(round(seconds * 22050)))
        # Every frame, the last ones too: batch mates' padding never reaches a clip's features.
        assert torch.allclose(result.float(), alone, atol=0.05)  # float16 rounding


def test_crop_or_pad_fills_with_the_clip_floor() -> None:
    features = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert crop_or_pad(features, 1, 2).tolist() == [[2.0, 3.0], [5.0, 6.0]]
    assert crop_or_pad(features, 0, 5).tolist() == [[1, 2, 3, 1, 1], [4, 5, 6, 1, 1]]


def test_window_starts_cover_the_whole_clip() -> None:
    assert window_starts(10, 4, 2) == [0, 2, 4, 6]
    assert window_starts(11, 4, 4) == [0, 4, 7]  # last window ends at the clip's end
    assert window_starts(3, 4, 2) == [0]


def test_feature_stats_match_numpy() -> None:
    clips = [torch.randn(4, n) * 3 + 2 for n in (5, 9)]
    values = np.concatenate([c.numpy().ravel() for c in clips])
    mean, std = feature_stats(clips)
    assert abs(mean - values.mean()) < 1e-5 and abs(std - values.std()) < 1e-5


def test_model_input_is_a_normalized_three_channel_square() -> None:
    features = torch.randn(2, 32, 50) * 4 + 10
    model_input = ModelInput(image_size=64, mean=10.0, std=4.0)
    image = model_input(model_input.normalize(features))
    assert image.shape == (2, 3, 64, 64)
    assert torch.equal(image[:, 0], image[:, 2])
    assert abs(float(image.mean())) < 0.2


def test_raw_power_features_keep_values_above_float16_range(tmp_path: Path) -> None:
    # The seed's features (no dB): a full-scale tone has Mel power far above float16's 65504.
    config = replace(CONFIG, n_fft=2048, to_db=False, top_db=None)
    path = write_wav(tmp_path / "loud.wav", tone(1000.0, 0.5, amplitude=0.99))
    result = extract_log_mels([path], config, progress=False)[0]
    alone = LogMel(config)(torch.from_numpy(sf.read(path, dtype="float32")[0]))
    assert alone.max() > 65504 and torch.isfinite(result).all()
    assert torch.allclose(result[:, :-3], alone[:, :-3], rtol=1e-4)
