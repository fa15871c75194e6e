"""Bad input end to end: each bad file gets one line naming it and the action; training goes on."""

from __future__ import annotations

import inspect
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from faults import write_fault_dataset

from audiocls_utils import audio
from audiocls_utils.data import build_manifest, find_audio_files
from audiocls_utils.engine.commands.cli import main
from audiocls_utils.errors import AudioclsError

# file -> words its "Excluded" line must hold
EXCLUDED = {
    "corrupt.wav": "cannot decode audio",
    "truncated.wav": "cannot decode audio",
    "cut.wav": "truncated",
    "empty.wav": "empty (0 bytes)",
    "silent.wav": "digital silence",
    "nan.wav": "NaN",
    "short.wav": "too short",
    "fake.mp3": "cannot decode audio",
    "loop_a.wav": "symbolic links",
    "loop_b.wav": "symbolic links",
    "caf\\xe9.wav": "not valid UTF-8",
    "voice.m4a": ".m4a is not a format this package decodes: convert it",
    "copy.wav": "low.00001.wav (labelled 'low'): one clip cannot have two labels",
    "low.00001.wav": "copy.wav (labelled 'high'): one clip cannot have two labels",
    "loop_dir": "(through a link): read once, there",
    "huge.wav": "far outside audio's ±1",
    "one_hertz.wav": "sample rate 1 Hz is no recording's",
    "cancelling.wav": "channels cancel out when mixed to mono",
}


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fault_dataset(tmp_path_factory.mktemp("faults") / "data")


def test_prepare_names_every_bad_file_once_with_its_action(
    faults: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["prepare", "--data-dir", str(faults), "--out", str(tmp_path / "m.csv")]) == 0
    lines = capsys.readouterr().out.splitlines()
    excluded = [line for line in lines if line.startswith("Excluded ")]
    for name, words in EXCLUDED.items():
        [line] = [line for line in excluded if f"/{name}: " in line]
        assert words in line
    assert len(excluded) == len(EXCLUDED)
    assert any("long.wav: very long clip" in line and "kept" in line for line in lines)
    assert any("has no clip of ['single']" in line for line in lines)
    manifest = json.dumps(open(tmp_path / "m.csv").read())
    for kept in ("stereo.wav", "flac_named.wav", "long.wav", "only.wav"):
        assert kept in manifest
    assert "notes.txt" not in manifest and "loop_dir" not in manifest


@pytest.mark.slow
def test_training_proceeds_on_the_good_clips(faults: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["train", "--data-dir", str(faults), "--profile", "smoke", "--output-dir",
                   str(tmp_path / "run"), "--tracking", "disabled"])
    assert status == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["classes"] == ["high", "low", "single"]


def test_unreadable_file_says_permission_denied(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.wav"
    sf.write(path, np.zeros(100, np.float32) + 0.1, 8000)

    def denied(*_: object, **__: object) -> None:
        raise PermissionError(13, "Permission denied")  # chmod 000 means nothing to root

    monkeypatch.setattr(audio.sf, "SoundFile", denied)
    with pytest.raises(AudioclsError, match=r"locked\.wav: permission denied.*chmod"):
        audio.load_audio(path, 8000)


def _two_classes(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for label, amplitude in (("jazz", 0.3), ("rock", 0.2)):  # no clip the same in both classes
        for index in range(6):
            sf.write(root / f"{label}{index}.wav", np.sin(np.arange(4000) * 0.1 * (index + 1))
                     .astype(np.float32) * amplitude, 8000)


def test_labels_csv_reports_missing_files_and_keeps_the_rest(tmp_path: Path) -> None:
    _two_classes(tmp_path)
    rows = [f"{label}{i}.wav,{label}" for label in ("jazz", "rock") for i in range(6)]
    (tmp_path / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\ngone.wav,jazz\n")
    manifest, excluded = build_manifest(tmp_path, labels_csv=tmp_path / "labels.csv",
                                        progress=False)
    assert len(manifest) == 12 and sorted(manifest["label"].unique()) == ["jazz", "rock"]
    assert [(Path(e.path).name, e.reason) for e in excluded] == [
        ("gone.wav", "listed in labels.csv but missing")]


@pytest.mark.parametrize("typo", ["Jazz", "jaz", "jazz "])
def test_label_typos_stop_with_what_to_fix(tmp_path: Path, typo: str) -> None:
    _two_classes(tmp_path)
    rows = [f"{label}{i}.wav,{label}" for label in ("jazz", "rock") for i in range(6)]
    rows[0] = f"jazz0.wav,{typo}"
    (tmp_path / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(AudioclsError, match=f"Label '{typo}' .*typo of 'jazz'"):
        build_manifest(tmp_path, labels_csv=tmp_path / "labels.csv", progress=False)


def test_linked_class_folders_are_followed_once(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # Before: a class folder that is a link was skipped without a word ("6 clips in 1 classes").
    _two_classes(tmp_path / "elsewhere")
    root = tmp_path / "data"
    (root / "jazz").mkdir(parents=True)
    for index in range(3):
        (tmp_path / "elsewhere" / f"jazz{index}.wav").rename(root / "jazz" / f"jazz{index}.wav")
    os.symlink(tmp_path / "elsewhere", root / "rock")  # a class kept on another disk
    os.symlink("jazz", root / "jazz_again")  # the same folder twice: read once
    assert main(["prepare", "--data-dir", str(root), "--out", str(tmp_path / "m.csv")]) == 0
    out = capsys.readouterr().out
    assert f"Excluded {root / 'jazz_again'}: the same folder as {root / 'jazz'}" in out
    assert "12 clips in 2 classes, 1 excluded" in out
    manifest = pd.read_csv(tmp_path / "m.csv")
    assert manifest["label"].value_counts().to_dict() == {"rock": 9, "jazz": 3}


def test_a_folder_that_cannot_be_listed_is_excluded_with_the_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: a class folder whose path is longer than the system allows vanished silently.
    _two_classes(tmp_path)
    monkeypatch.chdir(tmp_path)
    Path("deep").mkdir()
    monkeypatch.chdir("deep")
    for _ in range(18):  # 18 x 251 characters: past Linux's 4,096-byte path limit
        os.mkdir("d" * 250)
        os.chdir("d" * 250)
    sf.write("far.wav", np.full(4000, 0.2, np.float32), 8000)
    monkeypatch.chdir(tmp_path)
    manifest, excluded = build_manifest(tmp_path, progress=False, label_pattern=r"(?P<label>[a-z]+)\d")
    assert len(manifest) == 12
    [item] = excluded
    assert item.path.startswith(str(tmp_path / "deep" / ("d" * 250)))
    assert "folder cannot be listed (File name too long): move or rename it" in item.reason


def test_a_label_pattern_giving_an_empty_label_is_refused(tmp_path: Path) -> None:
    # Before: every clip got the label "" and prepare said it worked.
    _two_classes(tmp_path)
    with pytest.raises(AudioclsError, match=r"gives .*jazz0.wav an empty label: make "
                                            r"\(\?P<label>...\) match at least one character"):
        build_manifest(tmp_path, progress=False, label_pattern=r"(?P<label>\d*)")


@pytest.mark.parametrize(("bad", "cache"), [("huge", "--no-cache"), ("huge", "--cache-dir"),
                                            ("corrupt", "--no-cache")])
def test_a_manifest_listing_a_bad_clip_stops_naming_it(
        tone_dataset: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], bad: str,
        cache: str) -> None:
    # Before: "The training loss became nan: lower the learning rate", or with --no-cache and
    # workers 25 lines of a DataLoader worker's traceback; the file never named.
    assert main(["prepare", "--data-dir", str(tone_dataset), "--out", str(tmp_path / "m.csv")]) == 0
    clip = tmp_path / f"{bad}.wav"
    if bad == "huge":
        sf.write(clip, np.full(22050, 8e36, np.float32), 22050, subtype="FLOAT")
        reason = "samples reach 8e+36, far outside audio's ±1"
    else:
        clip.write_bytes(b"RIFF\x00\x10\x00\x00WAVE" + bytes(range(256)) * 16)
        reason = "cannot decode audio"
    with open(tmp_path / "m.csv", "a") as manifest:  # written by hand: prepare never saw it
        manifest.write(f"{clip},low,,1.0,22050,1,train\n")
    capfd.readouterr()
    status = main(["train", "--manifest", str(tmp_path / "m.csv"), "--output-dir",
                   str(tmp_path / "run"), "--profile", "smoke", "--tracking", "disabled",
                   "--workers", "2", cache, *([str(tmp_path / "cache")] if cache != "--no-cache"
                                              else [])])
    err = capfd.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert f"{clip}: {reason}" in err
    assert "leave it out of the manifest (`audiocls prepare` does)" in err
    assert "learning rate" not in err and "weights" not in err


def test_folders_nested_deeper_than_the_recursion_limit_are_read(tmp_path: Path) -> None:
    # Before: a tar nested 2,000 levels deep, extracted, made prepare fail with RecursionError.
    # The limit is lowered instead of nesting 2,000 folders, which rmtree (pytest's cleanup of
    # tmp_path) cannot remove on Python 3.11 either.
    deep = tmp_path / "rock"
    deep.mkdir()
    for _ in range(300):
        deep = deep / "d"
        deep.mkdir()
    (deep / "bottom.wav").write_bytes(b"RIFF")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack(0)) + 150)  # 300 levels of os.walk would not fit
    try:
        found, excluded = find_audio_files(tmp_path)
    finally:
        sys.setrecursionlimit(limit)
    assert found == [deep / "bottom.wav"] and excluded == []
