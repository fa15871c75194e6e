"""GTZAN as users have it: both layouts, the corrupt jazz.00054, and the artist-filtered split."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from helpers import tone

from audiocls_utils.data import build_manifest, make_splits
from audiocls_utils.engine.commands.cli import main
from audiocls_utils.errors import AudioclsError
from audiocls_utils.gtzan import GENRES, SOURCES, clip_id, known_sha256, split_filtered

# Kereliuk et al. (2015), table 1: 443 / 197 / 290 clips; 70 of GTZAN's 1,000 are in no list.
PUBLISHED = {"train": 443, "val": 197, "test": 290}
SAMPLES = tone(440.0, seconds=0.12)  # every fake clip: 2,646 samples (clips under 0.1 s are excluded)
# Each clip its own first sample: one file under two genres would be excluded as a copy.
STEP = np.float32(1 / 32768)


def _write_clips(folder: Path, extension: str) -> None:
    """Write GTZAN's 1,000 file names, as tiny clips, into folder/<genre>/."""
    for index, genre in enumerate(GENRES):
        (folder / genre).mkdir(parents=True)
        for number in range(100):
            samples = SAMPLES.copy()
            samples[0] = (100 * index + number) * STEP
            sf.write(str(folder / genre / f"{genre}.{number:05d}{extension}"), samples, 22050,
                     subtype="PCM_16", format="AU" if extension == ".au" else "WAV")


def _original(root: Path) -> Path:
    """Lay out the Marsyas archive: genres/<genre>/<genre>.000NN.au, .mf lists, .DS_Store."""
    _write_clips(root / "genres", ".au")
    for genre in GENRES:
        (root / "genres" / f"{genre}.mf").write_text(f"{genre}/{genre}.00000.au\t{genre}\n")
    (root / "genres" / "bextract_single.mf").write_text("blues/blues.00000.au\tblues\n")
    (root / "genres" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "genres" / "rock" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return root


def _kaggle(root: Path) -> Path:
    """Lay out Kaggle's copy: Data/genres_original (with its corrupt jazz.00054.wav), images, CSVs."""
    data = root / "Data"
    _write_clips(data / "genres_original", ".wav")
    (data / "genres_original" / "jazz" / "jazz.00054.wav").write_bytes(b"RIFF\x24\0\0\0WAVE")
    for genre in GENRES:
        (data / "images_original" / genre).mkdir(parents=True)
        (data / "images_original" / genre / f"{genre}00000.png").write_bytes(b"\x89PNG\r\n")
    (data / "features_30_sec.csv").write_text("filename,length,label\nblues.00000.wav,661794,blues\n")
    (data / "features_3_sec.csv").write_text("filename,length,label\nblues.00000.0.wav,66149,blues\n")
    (data / "genres_original" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return root


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Return the manifest of a fake original-archive GTZAN (1,000 .au clips)."""
    manifest, excluded = build_manifest(_original(tmp_path_factory.mktemp("marsyas")),
                                        progress=False)
    assert excluded == []
    return manifest


@pytest.fixture(scope="module")
def kaggle_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the folder of a fake Kaggle GTZAN."""
    return _kaggle(tmp_path_factory.mktemp("kaggle"))


@pytest.fixture(scope="module")
def kaggle(kaggle_root: Path) -> tuple[pd.DataFrame, list]:
    """Return the manifest and exclusions of a fake Kaggle GTZAN (999 decodable .wav clips)."""
    return build_manifest(kaggle_root, progress=False)


@pytest.mark.slow  # builds 1,000 tiny clips once per module
def test_original_layout_gives_1000_clips_in_10_genres(original: pd.DataFrame) -> None:
    assert len(original) == 1000
    assert original["label"].value_counts().to_dict() == {genre: 100 for genre in GENRES}
    assert original["path"].str.endswith(".au").all()


@pytest.mark.slow  # builds 1,000 tiny clips once per module
def test_kaggle_layout_gives_999_clips_and_names_the_corrupt_one(
    kaggle: tuple[pd.DataFrame, list]
) -> None:
    manifest, excluded = kaggle
    assert len(manifest) == 999 and manifest["label"].nunique() == 10
    assert (manifest["label"] == "jazz").sum() == 99
    assert [Path(item.path).name for item in excluded] == ["jazz.00054.wav"]
    assert excluded[0].reason.startswith("cannot decode audio")
    assert "known corruption of GTZAN's Kaggle copy" in excluded[0].reason
    assert not manifest["path"].str.contains("images_original|features_", regex=True).any()


@pytest.mark.slow  # builds 1,000 tiny clips once per module
def test_filtered_split_has_the_published_sizes(original: pd.DataFrame,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    split = make_splits(original, "filtered")
    assert split["split"].value_counts().to_dict() == PUBLISHED
    assert "70 clip(s) that the filtered split leaves out" in capsys.readouterr().out
    by_id = dict(zip(split["path"].map(clip_id), split["split"], strict=True))
    # First entries of the published lists, and two of the 70 clips it leaves out.
    assert (by_id["blues.00029"], by_id["blues.00000"], by_id["blues.00012"]) == (
        "train", "val", "test")
    assert "classical.00042" not in by_id and "disco.00050" not in by_id


@pytest.mark.slow  # builds 1,000 tiny clips once per module
def test_filtered_split_without_jazz_00054_has_442_training_clips(
    kaggle: tuple[pd.DataFrame, list], capsys: pytest.CaptureFixture[str]
) -> None:
    split = split_filtered(kaggle[0])
    assert split["split"].value_counts().to_dict() == {**PUBLISHED, "train": 442}
    assert "1 clip(s) of the filtered split are not in the manifest (jazz.00054)" in (
        capsys.readouterr().out)


@pytest.mark.slow  # builds 1,000 tiny clips once per module
def test_filtered_split_refuses_data_that_is_not_gtzan(original: pd.DataFrame) -> None:
    renamed = original.assign(path=original["path"].str.replace("blues.00003", "my_song"))
    with pytest.raises(AudioclsError, match=r"no GTZAN name .* e\.g\. .*my_song\.au"):
        split_filtered(renamed)
    synthetic_sized = original[original["path"].map(clip_id).str[-5:].astype(int) < 30]
    with pytest.raises(AudioclsError, match="Only 2.. of the 930 clips"):
        split_filtered(synthetic_sized)
    misfiled = original.assign(label=original["label"].replace({"pop": "rock"}))
    with pytest.raises(AudioclsError, match="named for another genre than its folder"):
        split_filtered(misfiled)


@pytest.mark.slow  # builds 1,000 tiny clips
def test_a_wav_copy_whose_jazz_00054_decodes_keeps_it_443_training_clips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The original archive converted to .wav: its jazz.00054.wav decodes, so it is used.
    _write_clips(tmp_path / "genres", ".wav")
    manifest, excluded = build_manifest(tmp_path, progress=False)
    assert excluded == [] and len(manifest) == 1000
    assert make_splits(manifest, "filtered")["split"].value_counts().to_dict() == PUBLISHED
    assert "not in the manifest" not in capsys.readouterr().out


def test_clip_ids_ignore_folder_and_extension() -> None:
    assert clip_id("/data/genres/blues/blues.00042.au") == "blues.00042"
    assert clip_id("Data/genres_original/jazz/jazz.00054.wav") == "jazz.00054"


def test_documented_checksums_belong_to_their_urls() -> None:
    for source in SOURCES.values():
        assert known_sha256(source.url) == source.sha256
        assert len(source.sha256) == 64 and int(source.sha256, 16) >= 0
    assert known_sha256("file:///elsewhere/genres.tar.gz") is None


@pytest.mark.slow  # builds 1,000 tiny clips once per module
def test_prepare_writes_the_filtered_split(kaggle_root: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["prepare", "--data-dir", str(kaggle_root), "--out", str(tmp_path / "m.csv"),
                   "--split", "filtered"])
    text = capsys.readouterr().out
    assert status == 0
    assert text.count("Excluded") == 1 and "jazz.00054.wav: cannot decode audio" in text
    assert "It is the known corruption of GTZAN's Kaggle copy" in text
    assert "929 clips in 10 classes, 1 excluded" in text
    manifest = pd.read_csv(tmp_path / "m.csv")
    assert manifest.groupby("split").size().to_dict() == {**PUBLISHED, "train": 442}
    assert os.path.commonpath(manifest["path"].tolist()) == str(
        kaggle_root / "Data" / "genres_original")
    assert np.isclose(manifest["duration"], 0.12, atol=1e-3).all()
