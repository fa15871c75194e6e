"""The synthetic GTZAN-shaped dataset: deterministic, well-formed, learnable, leaky by artist."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from audiocls_utils import gtzan
from audiocls_utils.engine import synth
from audiocls_utils.engine.synth import GENRES, SAMPLE_RATE, generate_dataset, synthesize_clip

SMALL = {"clips_per_class": 3, "seconds": 1.0, "artists_per_class": 3, "progress": False}


def sha256_of_wavs(root: Path) -> dict[str, str]:
    """Map each wav below root (relative path) to the sha256 of its bytes."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.glob("*/*.wav"))}


def mtimes(root: Path) -> dict[str, int]:
    """Map each file below root to its modification time in nanoseconds."""
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns
            for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generate a tiny dataset once: 10 genres x 3 clips x 1 s, 3 artists per genre."""
    return generate_dataset(tmp_path_factory.mktemp("synth"), **SMALL)


def test_same_seed_gives_identical_files(small_dataset: Path, tmp_path: Path) -> None:
    again = generate_dataset(tmp_path / "again", **SMALL)
    other = generate_dataset(tmp_path / "other", seed=1, **SMALL)
    assert sha256_of_wavs(again) == sha256_of_wavs(small_dataset)
    assert (again / "groups.csv").read_bytes() == (small_dataset / "groups.csv").read_bytes()
    shared = set(sha256_of_wavs(other).values()) & set(sha256_of_wavs(small_dataset).values())
    assert not shared, "a different seed must change every clip"


def test_layout_and_format(small_dataset: Path) -> None:
    assert small_dataset.name == "genres"
    expected = sorted(f"{g}/{g}.{i:05d}.wav" for g in GENRES for i in range(3))
    assert sorted(sha256_of_wavs(small_dataset)) == expected
    for name in expected:
        info = sf.info(str(small_dataset / name))
        assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
        assert info.frames == SAMPLE_RATE  # seconds=1.0
    with open(small_dataset / "groups.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == sorted(r["path"] for r in rows) == expected
    for genre in GENRES:
        groups = {r["group"] for r in rows if r["path"].startswith(f"{genre}/")}
        assert groups == {f"{genre}-artist{a}" for a in range(3)}
    readme = (small_dataset / "README.txt").read_text()
    assert "SYNTHETIC" in readme and "seed=0" in readme and "difficulty=0.5" in readme


def test_files_get_the_umasks_permissions_and_gtzans_genres(small_dataset: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    for name in ("blues/blues.00000.wav", "groups.csv", "README.txt", ".synth.json"):
        assert stat.S_IMODE((small_dataset / name).stat().st_mode) == 0o666 & ~umask, name
    assert GENRES is gtzan.GENRES  # one list of genres, GTZAN's


def test_artists_take_contiguous_blocks_of_clips(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path, clips_per_class=4, seconds=0.2, artists_per_class=2,
                            progress=False)
    with open(root / "groups.csv", newline="") as f:
        groups = [r["group"] for r in csv.DictReader(f) if r["path"].startswith("jazz/")]
    assert groups == ["jazz-artist0", "jazz-artist0", "jazz-artist1", "jazz-artist1"]


def test_rerun_skips_and_other_settings_never_delete_a_finished_set(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path, **SMALL)
    before = mtimes(root)
    assert generate_dataset(tmp_path, **SMALL) == root
    assert mtimes(root) == before

    with pytest.raises(FileExistsError, match=r"other settings \(difficulty 0.5 -> 0.3\).*--replace"):
        generate_dataset(tmp_path, **{**SMALL, "difficulty": 0.3})
    assert mtimes(root) == before

    generate_dataset(tmp_path, **{**SMALL, "difficulty": 0.3}, replace=True)
    after = mtimes(root)
    assert all(after[name] != before[name] for name in before if name.endswith(".wav"))
    marker = json.loads((root / ".synth.json").read_text())
    assert (marker["difficulty"], marker["complete"]) == (0.3, True)

    generate_dataset(tmp_path, **{**SMALL, "clips_per_class": 2, "artists_per_class": 2},
                     replace=True)
    assert len(sha256_of_wavs(root)) == 2 * len(GENRES), "stale clips must be removed"
    assert not list(root.rglob("*.tmp"))


def test_missing_file_triggers_regeneration(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path, **SMALL)
    (root / "rock" / "rock.00001.wav").unlink()
    generate_dataset(tmp_path, **SMALL)
    assert (root / "rock" / "rock.00001.wav").is_file()


def test_interrupted_run_is_redone_on_the_next_call(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    real_synthesize = synth.synthesize_clip
    calls = []

    def interrupted(*args: object) -> np.ndarray:
        calls.append(args)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_synthesize(*args)

    monkeypatch.setattr(synth, "synthesize_clip", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path, **SMALL)
    monkeypatch.undo()
    root = tmp_path / "genres"
    assert json.loads((root / ".synth.json").read_text())["complete"] is False
    assert len(sha256_of_wavs(root)) == 4 and not list(root.rglob("*.tmp"))
    generate_dataset(tmp_path, **SMALL)
    assert len(sha256_of_wavs(root)) == 3 * len(GENRES)
    assert json.loads((root / ".synth.json").read_text())["complete"] is True


def test_refuses_to_overwrite_foreign_audio(tmp_path: Path) -> None:
    real = tmp_path / "genres" / "blues" / "blues.00000.wav"
    real.parent.mkdir(parents=True)
    real.write_bytes(b"not made by synth")
    with pytest.raises(FileExistsError, match="did not write"):
        generate_dataset(tmp_path, **SMALL)
    assert real.read_bytes() == b"not made by synth"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["blues", "blues.00000.wav", "genres"]


def test_clip_is_float32_mono_within_range() -> None:
    for genre in GENRES:
        clip = synthesize_clip(genre, seconds=0.75, seed=3, sample_rate=16000)
        assert clip.dtype == np.float32 and clip.shape == (12000,)
        assert np.isfinite(clip).all()
        assert 0.29 <= np.abs(clip).max() <= 0.951


@pytest.mark.parametrize(("call", "bad"), [
    (lambda out: synthesize_clip("polka"), "'polka'"),
    (lambda out: synthesize_clip("jazz", seconds=0), "got 0"),
    (lambda out: synthesize_clip("jazz", difficulty=1.5), "got 1.5"),
    (lambda out: synthesize_clip("jazz", difficulty=-0.25), "got -0.25"),
    (lambda out: generate_dataset(out, clips_per_class=0), "got 0"),
    (lambda out: generate_dataset(out, seconds=-2.0), "got -2.0"),
    (lambda out: generate_dataset(out, difficulty=7), "got 7"),
    (lambda out: generate_dataset(out, artists_per_class=0), "got 0"),
])
def test_bad_arguments_raise_value_error_naming_the_value(call, bad: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=re.escape(bad)):
        call(tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- learnability

ARTISTS = 4
SEED = 1000  # clip seeds are SEED + clip index
Features = tuple[np.ndarray, np.ndarray, np.ndarray]  # features, genre labels, artist groups


def band_features(clip: np.ndarray, n_fft: int = 1024, bands: int = 40) -> np.ndarray:
    """Return mean and std over frames of the log power in log-spaced frequency bands."""
    frames = np.lib.stride_tricks.sliding_window_view(clip, n_fft)[::n_fft // 2]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2
    edges = np.geomspace(40.0, SAMPLE_RATE / 2, bands + 1)
    band = np.clip(np.searchsorted(edges, np.fft.rfftfreq(n_fft, 1 / SAMPLE_RATE)) - 1, 0,
                   bands - 1)
    banded = np.stack([power[:, band == b].sum(axis=1) for b in range(bands)], axis=1)
    log_power = np.log10(banded + 1e-10)
    return np.concatenate([log_power.mean(axis=0), log_power.std(axis=0)])


def features(difficulty: float, clips: int, seconds: float) -> Features:
    """Return features, genre labels and artist groups of 10 genres x `clips` clips."""
    x, y, groups = [], [], []
    for label, genre in enumerate(GENRES):
        for clip in range(clips):
            artist = clip * ARTISTS // clips
            audio = synthesize_clip(genre, seconds, seed=SEED + clip, difficulty=difficulty,
                                    artist=artist)
            x.append(band_features(audio))
            y.append(label)
            groups.append(f"{genre}-{artist}")
    return np.array(x), np.array(y), np.array(groups)


def classifier() -> Pipeline:
    """Return a standardized logistic regression."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=3000))


def random_split_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    """Return the mean accuracy of 4-fold stratified cross-validation."""
    folds = StratifiedKFold(4, shuffle=True, random_state=0)
    return cross_val_score(classifier(), x, y, cv=folds).mean()


@pytest.fixture(scope="module")
def default_set() -> Features:
    """Compute the features of 10 genres x 16 clips x 3 s at the default difficulty."""
    return features(0.5, clips=16, seconds=3.0)


def test_genres_are_learnable_but_not_trivial(default_set: Features) -> None:
    x, y, _ = default_set
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.5, stratify=y,
                                                        random_state=0)
    accuracy = classifier().fit(x_train, y_train).score(x_test, y_test)
    # Measured 0.76-0.79 over clip seeds; chance is 0.10.
    assert 0.4 < accuracy < 0.97


def test_difficulty_controls_overlap() -> None:
    easy = random_split_accuracy(*features(0.0, clips=8, seconds=2.5)[:2])
    hard = random_split_accuracy(*features(1.0, clips=8, seconds=2.5)[:2])
    # Measured over clip seeds: 0.94-0.98 at difficulty 0, 0.36-0.48 at difficulty 1.
    assert easy > 0.85
    assert hard < easy - 0.25


def test_artists_have_a_persistent_style(default_set: Features) -> None:
    x, y, groups = default_set
    z = StandardScaler().fit_transform(x)
    within, between = [], []
    for label in range(len(GENRES)):
        members = np.flatnonzero(y == label)
        distance = np.linalg.norm(z[members, None] - z[None, members], axis=-1)
        same = groups[members][:, None] == groups[members][None, :]
        within.append(distance[same & ~np.eye(len(members), dtype=bool)].mean())
        between.append(distance[~same].mean())
    # Measured: within/between-artist distance ratio 0.77-0.80 over clip seeds.
    assert np.mean(within) / np.mean(between) < 0.9


def test_random_split_leaks_artists(default_set: Features) -> None:
    x, y, groups = default_set
    artist_split = cross_val_score(classifier(), x, y, cv=GroupKFold(4), groups=groups).mean()
    # Measured over clip seeds: 0.78-0.82 with a random split, 0.58-0.66 artist-disjoint.
    assert random_split_accuracy(x, y) > artist_split + 0.05


def test_synth_command_refuses_another_set_and_replaces_it_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from audiocls_utils.engine.commands.cli import main

    args = ["synth", "--out", str(tmp_path), "--clips-per-class", "1", "--seconds", "0.2"]
    assert main(args) == 0
    root = tmp_path / "genres"
    assert main([*args[:4], "2", *args[5:]]) == 2
    assert "already holds a synthetic set" in capsys.readouterr().err
    assert len(sha256_of_wavs(root)) == len(GENRES)
    assert main([*args[:4], "2", *args[5:], "--replace"]) == 0
    assert len(sha256_of_wavs(root)) == 2 * len(GENRES)
    assert json.loads((root / ".synth.json").read_text())["clips_per_class"] == 2
