"""Reading audio: mono downmix, resampling, and a clear error for every kind of bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tone, write_wav

from audiocls_utils.audio import describe_audio, fix_length, load_audio, read_audio
from audiocls_utils.errors import AudioclsError


def test_stereo_is_downmixed_to_the_mean_of_its_channels(tmp_path: Path) -> None:
    left, right = tone(440.0, 0.5), tone(660.0, 0.5, amplitude=0.2)
    path = write_wav(tmp_path / "stereo.wav", np.stack([left, right], axis=1), subtype="FLOAT")
    waveform = load_audio(path, 22050)
    assert waveform.shape == (11025,)
    assert torch.allclose(waveform, torch.from_numpy((left + right) / 2), atol=1e-6)
    assert describe_audio(path).channels == 2


@pytest.mark.parametrize("source_rate", [8000, 44100])
def test_resampling_keeps_duration_and_pitch(tmp_path: Path, source_rate: int) -> None:
    path = write_wav(tmp_path / "a.wav", tone(440.0, 1.0, source_rate), source_rate)
    waveform = load_audio(path, 22050)
    assert waveform.shape == (22050,)
    spectrum = torch.fft.rfft(waveform).abs()
    assert abs(int(spectrum.argmax()) - 440) <= 1  # 1 s long: bin k is k Hz


def test_fix_length_crops_and_pads_with_silence() -> None:
    waveform = torch.arange(1, 6, dtype=torch.float32)
    assert fix_length(waveform, 3, offset=1).tolist() == [2, 3, 4]
    assert fix_length(waveform, 7).tolist() == [1, 2, 3, 4, 5, 0, 0]


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    good = write_wav(tmp_path / "good.wav", tone(440.0, 1.0))
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:30])  # header cut inside the fmt chunk
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 20)
    nan = write_wav(tmp_path / "nan.wav", np.full(1000, np.nan, np.float32), subtype="FLOAT")
    return {"truncated": truncated, "empty": empty, "not audio": text, "nan": nan}


@pytest.mark.parametrize("kind", ["truncated", "empty", "not audio", "nan"])
def test_bad_files_raise_one_clear_error_naming_the_file(tmp_path: Path, kind: str) -> None:
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(AudioclsError) as error:
        read_audio(path)
    message = str(error.value)
    assert str(path) in message
    assert any(word in message for word in ("delete", "download", "Re-export"))


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(AudioclsError, match="not found"):
        load_audio(tmp_path / "nope.wav", 22050)


@pytest.mark.parametrize("channels", [1, 2])
def test_16_bit_pcm_reads_as_libsndfile_converts_it(tmp_path: Path, channels: int) -> None:
    import soundfile as sf

    rng = np.random.default_rng(0)
    ints = np.concatenate([[-32768, 32767, 0, -1, 1], rng.integers(-32768, 32768, 995)])
    ints = np.stack([ints, ints[::-1]], axis=1)[:, :channels].astype(np.int16)
    path = tmp_path / "pcm16.wav"
    sf.write(str(path), ints, 22050, subtype="PCM_16")
    samples, rate = read_audio(path)
    expected, _ = sf.read(str(path), dtype="float32", always_2d=True)
    assert rate == 22050 and samples.dtype == np.float32
    assert np.array_equal(samples, expected)
    assert samples.min() == -1.0 and samples.max() == np.float32(32767 / 32768)
