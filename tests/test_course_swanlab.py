"""The notebooks' SwanLab helpers: the test set logged as SwanLab's own chart and media (confusion
matrix, misclassified clips as audio with their log-Mels), banners kept out of the output, and the
one line a notebook prints per run. Chapter 03 writes `misclassified` and `swanlab_test_media`
(in the core's metrics and plots, which `audiocls train` uses too); the chapters import them from
the course module."""

from __future__ import annotations

from pathlib import Path

import pytest
import swanlab
import torch
from helpers import tone, write_wav

from audiocls_utils.config import FeatureConfig
from audiocls_utils.course import (
    Course,
    DatasetInfo,
    misclassified,
    quiet_swanlab,
    swanlab_test_media,
)

CLASSES = ["high", "low", "mid"]
CONFIG = FeatureConfig()


def _clips(tmp_path: Path, seconds: float = 2.0) -> list[Path]:
    """Write four tones of `seconds` each; return their paths."""
    return [write_wav(tmp_path / f"clip{i}.wav", tone(220.0 * (i + 1), seconds=seconds))
            for i in range(4)]


# True targets 0, 1, 2, 1; clip 1 is taken for class 0 (p 0.6), clip 3 for class 2 (p 0.9).
TARGETS = [0, 1, 2, 1]
PROBABILITIES = torch.tensor([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.05, 0.05, 0.9]])


def test_misclassified_lists_the_most_confident_mistakes_first() -> None:
    assert misclassified(TARGETS, PROBABILITIES) == [3, 1]
    assert misclassified(TARGETS, PROBABILITIES, max_clips=1) == [3]
    assert misclassified([0, 0, 2, 2], PROBABILITIES) == []  # the predictions themselves


def test_media_holds_swanlabs_confusion_matrix_and_the_mistakes_as_audio_and_images(
        tmp_path: Path) -> None:
    paths = _clips(tmp_path, seconds=2.0)
    media = swanlab_test_media(paths, TARGETS, PROBABILITIES, CLASSES, CONFIG, seconds=1.5)
    assert set(media) == {"test/confusion_matrix", "test/misclassified_audio",
                          "test/misclassified_log_mel"}

    # SwanLab's echarts heatmap: one [true, predicted, fraction of the true class] per pair.
    chart = media["test/confusion_matrix"]
    assert type(chart).__name__ == "HeatMap"
    cells = {(true, predicted): float(share) for true, predicted, share in
             chart.options["series"][0]["data"]}
    by_hand = {(t, p): 0.0 for t in CLASSES for p in CLASSES}
    by_hand.update({("high", "high"): 1.0, ("mid", "mid"): 1.0, ("low", "high"): 0.5,
                    ("low", "mid"): 0.5})  # the two "low" clips: one taken for each other class
    assert cells == by_hand

    sounds, images = media["test/misclassified_audio"], media["test/misclassified_log_mel"]
    assert [type(s) for s in sounds] == [swanlab.Audio] * 2
    assert [type(i) for i in images] == [swanlab.Image] * 2
    assert [s.caption for s in sounds] == ["clip3.wav: low taken for mid (0.90)",
                                           "clip1.wav: low taken for high (0.60)"]
    assert [i.caption for i in images] == [s.caption for s in sounds]
    assert all(s.sample_rate == CONFIG.sample_rate for s in sounds)


def test_media_without_mistakes_is_the_confusion_matrix_alone(tmp_path: Path) -> None:
    right = torch.eye(3)[[0, 1, 2, 2]]  # every clip predicted as its target
    media = swanlab_test_media(_clips(tmp_path), [0, 1, 2, 2], right, CLASSES, CONFIG)
    assert list(media) == ["test/confusion_matrix"]


def test_no_chart_when_a_class_has_no_test_clip(tmp_path: Path) -> None:
    # SwanLab's chart would mislabel its rows (or fail) without a clip of "mid" (target 2).
    media = swanlab_test_media(_clips(tmp_path), [0, 1, 0, 1], PROBABILITIES, CLASSES, CONFIG)
    assert "test/confusion_matrix" not in media and len(media["test/misclassified_audio"]) == 3


def test_a_local_run_logs_the_media_without_printing_banners(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    media = swanlab_test_media(_clips(tmp_path), TARGETS, PROBABILITIES, CLASSES, CONFIG)
    log_dir = tmp_path / "swanlog"
    with quiet_swanlab():
        swanlab.init(project="audiocls-test", name="quiet", mode="local", log_dir=str(log_dir))
    swanlab.log(media)
    with quiet_swanlab():
        swanlab.finish()
    assert "swanlab" not in capfd.readouterr().out.lower()
    run = next(log_dir.glob("run-*"))
    assert len(list((run / "media" / "audio").glob("*.wav"))) == 2
    assert len(list((run / "media" / "image").glob("*.png"))) == 2
    assert len(list((run / "media" / "echarts").glob("*.json"))) == 1

    # Outside the block SwanLab speaks again: the test above can fail.
    swanlab.init(project="audiocls-test", name="loud", mode="local", log_dir=str(log_dir))
    swanlab.finish()
    assert "swanlab watch" in capfd.readouterr().out


def _course(tmp_path: Path, profile: str, mode: str) -> Course:
    return Course(profile, torch.device("cpu"), 42, DatasetInfo(tmp_path, "d", True), tmp_path, mode)


def test_one_swanlab_line_per_run_says_where_it_goes_or_why_not(tmp_path: Path) -> None:
    local = _course(tmp_path, "cpu", "local").swanlab_line("baseline@cpu-notebook")
    folder = tmp_path / "runs" / "swanlog"
    assert local == (f"SwanLab run 'baseline@cpu-notebook' logged to {folder} (local mode; "
                     f"view: swanlab watch {folder}, deprecated upstream)")
    assert "in the smoke profile" in _course(tmp_path, "smoke", "disabled").swanlab_line("x")
    assert "SWANLAB_MODE=disabled" in _course(tmp_path, "cpu", "disabled").swanlab_line("x")
    assert _course(tmp_path, "cpu", "offline").swanlab_line("x") == (
        f"SwanLab run 'x' logged to {folder} (offline mode; upload with swanlab sync {folder / 'run-*'} "
        "to see it online)")
    assert "\n" not in local and local.count("swanlab watch") == 1
