"""Reading audio: mono downmix, resampling, and a clear error for every kind of bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tone, write_wav

from audiocls_utils.audio import describe_audio, load_audio
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
        load_audio(path, 22050)
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
    samples = load_audio(path, 22050).numpy()  # mono: the channels' mean
    expected, _ = sf.read(str(path), dtype="float32", always_2d=True)
    assert samples.dtype == np.float32 and np.array_equal(samples, expected.mean(axis=1))
    if channels == 1:
        assert samples.min() == -1.0 and samples.max() == np.float32(32767 / 32768)


def _streamed_wav(path: Path, samples: np.ndarray, sample_rate: int = 22050) -> Path:
    """Write a 16-bit mono wav as a streaming writer does: RIFF and data sizes 0xFFFFFFFF."""
    import struct

    pcm = (samples * 32767).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, 2 * sample_rate, 2, 16)
    path.write_bytes(b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"fmt "
                     + struct.pack("<I", len(fmt)) + fmt + b"data"
                     + struct.pack("<I", 0xFFFFFFFF) + pcm)
    return path


def test_a_streamed_wav_with_unknown_sizes_is_read_whole(tmp_path: Path) -> None:
    import soundfile as sf

    samples = tone(440.0, 0.5)
    path = _streamed_wav(tmp_path / "streamed.wav", samples)
    assert sf.info(str(path)).frames == 11025  # libsndfile reads it: so must we
    info = describe_audio(path)
    assert info.num_samples == 11025 and info.duration == pytest.approx(0.5)
    assert torch.allclose(load_audio(path, 22050), torch.from_numpy(samples), atol=1e-4)


def test_prepare_keeps_a_streamed_wav_and_a_w64_file(tmp_path: Path) -> None:
    import soundfile as sf

    from audiocls_utils.data import build_manifest

    for label in ("a", "b"):
        (tmp_path / label).mkdir()
    _streamed_wav(tmp_path / "a" / "streamed.wav", tone(440.0, 0.5))
    sf.write(str(tmp_path / "b" / "wave64.w64"), tone(660.0, 0.5), 22050, format="W64")
    manifest, excluded = build_manifest(tmp_path, progress=False)
    assert excluded == []
    assert sorted(Path(p).name for p in manifest["path"]) == ["streamed.wav", "wave64.w64"]
    assert manifest["duration"].tolist() == [0.5, 0.5]


def test_a_cut_download_is_still_refused(tmp_path: Path) -> None:
    good = write_wav(tmp_path / "good.wav", tone(440.0, 1.0)).read_bytes()
    (tmp_path / "cut.wav").write_bytes(good[: len(good) // 2])
    # 44,100 bytes of data promised; 22,072 - 44 (the header) there.
    with pytest.raises(AudioclsError, match=r"cut\.wav: truncated: 22072 bytes"):
        describe_audio(tmp_path / "cut.wav")


def test_a_folder_is_named_as_a_folder(tmp_path: Path) -> None:
    with pytest.raises(AudioclsError, match="is a folder, not an audio file"):
        describe_audio(tmp_path)
