"""Checking a learner's own dataset: what it finds (silent, unreadable, too long, small classes,
near-duplicates across splits) and the one line it gives when nothing can be trained on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import REPO, tone, write_wav

from audiocls_utils.checks import check_dataset, fingerprint, near_duplicates
from audiocls_utils.config import FeatureConfig
from audiocls_utils.errors import AudioclsError

RATE = 8000


def _clip(frequency: float, seed: int, seconds: float = 0.5, amplitude: float = 0.3) -> np.ndarray:
    """A tone with a vibrato and noise of its own: no two seeds give near-duplicates."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    wobble = rng.uniform(2, 9) * np.sin(2 * np.pi * rng.uniform(1, 5) * t)
    samples = amplitude * np.sin(2 * np.pi * (frequency * rng.uniform(0.8, 1.25)) * t + wobble)
    samples *= np.hanning(len(t)) ** rng.uniform(0.2, 2)
    return (samples + rng.normal(0, 0.02, len(t))).astype(np.float32)


def _dataset(root: Path, classes: dict[str, float], clips: int = 6) -> Path:
    for number, (label, frequency) in enumerate(classes.items()):
        for index in range(clips):
            write_wav(root / label / f"{label}_{index}.wav", _clip(frequency, 100 * number + index),
                      RATE)
    return root


def test_a_clean_folder_is_reported_class_by_class_and_split(tmp_path: Path) -> None:
    report = check_dataset(_dataset(tmp_path / "d", {"low": 300, "high": 2000}, clips=10))
    table = report.per_class()
    assert list(table.index) == ["high", "low"] and table["clips"].tolist() == [10, 10]
    assert (table[["train", "val", "test"]].sum(axis=1) == 10).all()
    assert table["sample rates (Hz)"].tolist() == ["8000", "8000"]
    assert report.split == "random" and report.problems().empty and report.duplicates.empty
    assert len(report.log_mels) == len(report.manifest) == 20
    assert report.config.sample_rate == RATE and report.config.n_mels == 40


def test_silent_unreadable_and_too_long_files_are_named_and_skipped(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d", {"low": 300, "high": 2000})
    hiss = np.random.default_rng(1).normal(0, 0.0003, RATE).astype(np.float32)  # about -70 dBFS
    write_wav(root / "low" / "hiss.wav", hiss, RATE)
    write_wav(root / "low" / "zeros.wav", np.zeros(RATE, np.float32), RATE)
    (root / "high" / "broken.wav").write_bytes(b"RIFF....WAVEnot audio")
    write_wav(root / "high" / "long.wav", tone(500, seconds=700, sample_rate=1000), 1000)
    report = check_dataset(root)
    problems = report.problems()
    reasons = {Path(p).name: r for p, r in zip(problems["path"], problems["reason"], strict=True)}
    assert set(reasons) == {"hiss.wav", "zeros.wav", "broken.wav", "long.wav"}
    assert reasons["hiss.wav"].startswith("silent:") and "silence" in reasons["zeros.wav"]
    assert "12 min long" in reasons["long.wav"] and "cut it" in reasons["long.wav"]
    assert len(report.manifest) == 12


def test_a_class_too_small_to_split_is_left_out_and_named(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d", {"low": 300, "mid": 900, "high": 2000})
    for extra in (2, 3, 4, 5):
        (root / "high" / f"high_{extra}.wav").unlink()
    report = check_dataset(root)
    assert report.small_classes == {"high": 2}
    assert set(report.manifest["label"]) == {"low", "mid"}
    assert any("'high' left out: 2 clip(s)" in line for line in report.summary())


def test_a_copy_in_another_split_is_found_even_louder_and_trimmed(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d", {"low": 300, "high": 2000}, clips=10)
    original = _clip(300, 999, seconds=1.0)  # a seed no other clip has
    write_wav(root / "low" / "take.wav", original, RATE)
    write_wav(root / "low" / "take_copy.wav", 1.8 * original[400:], RATE)  # louder, 50 ms cut
    groups = pd.DataFrame({"path": ["low/take.wav", "low/take_copy.wav"], "group": ["a", "b"]})
    rows = [f"{label}/{label}_{i}.wav" for label in ("low", "high") for i in range(10)]
    groups = pd.concat([groups, pd.DataFrame({"path": rows, "group": [f"g{i % 5}" for i in range(20)]})])
    groups.to_csv(root / "groups.csv", index=False)
    for seed in range(20):  # a seed that puts the two groups in different splits
        report = check_dataset(root, split="group", seed=seed)
        split_of = dict(zip(report.manifest["path"].map(lambda p: Path(p).name),
                            report.manifest["split"], strict=True))
        if split_of["take.wav"] != split_of["take_copy.wav"]:
            break
        assert report.duplicates.empty  # in one split, a copy leaks nothing
    else:
        pytest.fail("no seed split the two groups")
    pair = report.duplicates.iloc[0]
    assert {Path(pair["first"]).name, Path(pair["second"]).name} == {"take.wav", "take_copy.wav"}
    assert pair["similarity"] > 0.99 and len(report.duplicates) == 1


def test_near_duplicates_compare_only_clips_in_different_splits() -> None:
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=(40, 30)).astype(np.float32) for _ in range(2))
    manifest = pd.DataFrame({"path": ["1", "2", "3"], "label": ["x", "x", "y"],
                             "split": ["train", "train", "test"]})
    found = near_duplicates(manifest, [a, a + 5.0, b])  # a louder copy, in the same split
    assert found.empty
    manifest["split"] = ["train", "test", "test"]
    found = near_duplicates(manifest, [a, a + 5.0, b])
    assert found[["first", "second", "splits"]].values.tolist() == [["1", "2", "train/test"]]
    assert float(fingerprint(a) @ fingerprint(b)) < 0.5


@pytest.mark.parametrize("case", ["empty", "one class", "unreadable"])
def test_bad_folders_stop_with_one_line(tmp_path: Path, case: str) -> None:
    root = tmp_path / "data"
    root.mkdir()
    if case == "one class":
        _dataset(root, {"only": 440})
    elif case == "unreadable":
        for name in ("a", "b"):
            (root / "cls" / f"{name}.wav").parent.mkdir(exist_ok=True)
            (root / "cls" / f"{name}.wav").write_bytes(b"not a wav file at all")
    expected = {"empty": "No usable audio clips", "one class": "needs two or more classes",
                "unreadable": "No usable audio clips.*2 file"}[case]
    with pytest.raises(AudioclsError, match=expected) as error:
        check_dataset(root)
    assert "\n" not in str(error.value)
    if case == "unreadable":
        assert "a.wav" in str(error.value)  # names a file and why


def test_a_csv_of_paths_and_labels_is_read_and_a_two_hour_clip_is_one_line(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d", {"low": 300, "high": 2000})
    write_wav(root / "hours.wav", np.zeros(2 * 3600 * 1000, np.int16) + 300, 1000, subtype="PCM_16")
    rows = [{"path": f"{label}/{label}_{i}.wav", "label": label} for label in ("low", "high")
            for i in range(6)]
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    assert len(check_dataset(root / "labels.csv").manifest) == 12
    pd.DataFrame([{"path": "hours.wav", "label": "low"}, *rows[6:]]).to_csv(root / "long.csv",
                                                                          index=False)
    script = ("import sys\nfrom audiocls_utils.checks import check_dataset\n"
              "from audiocls_utils.errors import AudioclsError\n"
              "try:\n    check_dataset(sys.argv[1])\n"
              "except AudioclsError as error:\n    print(error)\n")
    shown = subprocess.run([sys.executable, "-c", script, str(root / "long.csv")], cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr + shown.stdout
    line = shown.stdout.strip()
    assert "\n" not in line and "hours.wav" in line and "120 min long" in line, line


def test_digits_check_clean_and_split_by_speaker(fsdd: Path) -> None:
    report = check_dataset(fsdd, "fsdd", config=FeatureConfig(sample_rate=8000, n_fft=256,
                                                               hop_length=64, n_mels=40))
    assert report.split == "group" and not report.warnings
    assert report.manifest.groupby("group")["split"].nunique().max() == 1
    assert len(report.manifest) + len(report.excluded) == 3000 and len(report.manifest) > 2950
    assert report.duplicates.empty  # six speakers: no recording appears twice
    assert report.per_class()["clips"].between(290, 300).all()
