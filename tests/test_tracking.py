"""Tracking: SwanLab logs locally with no account, quietly (one line per run), with the test set
as SwanLab's chart and media, and its failures never stop training."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import write_wav

from audiocls_utils.config import FeatureConfig, apply_profile, get_recipe
from audiocls_utils.data import build_manifest, make_splits
from audiocls_utils.engine.experiment.runner import run_experiment
from audiocls_utils.engine.experiment.tracking import Tracker, resolve_mode
from audiocls_utils.errors import AudioclsError


def test_mode_comes_from_argument_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWANLAB_MODE", "offline")
    assert resolve_mode(None) == "offline"
    assert resolve_mode("disabled") == "disabled"
    monkeypatch.delenv("SWANLAB_MODE")
    assert resolve_mode(None) == "offline"  # SwanLab's maintained flow, no account needed
    with pytest.raises(AudioclsError, match="--tracking='bogus' is not a SwanLab mode"):
        resolve_mode("bogus")
    monkeypatch.setenv("SWANLAB_MODE", "garbage")
    with pytest.raises(AudioclsError, match="SWANLAB_MODE='garbage' is not .* unset it"):
        resolve_mode(None)
    assert resolve_mode(" Cloud ") == "online"


def test_disabled_tracker_does_nothing(tmp_path: Path) -> None:
    tracker = Tracker(experiment="t", mode="disabled", log_dir=tmp_path / "logs")
    tracker.log({"train/loss": 1.0}, step=1)
    tracker.log_test_set(["missing.wav"], [1], torch.eye(2)[:1], ["a", "b"], FeatureConfig())
    tracker.finish()
    assert not (tmp_path / "logs").exists()
    assert tracker.line() == "SwanLab run 't' not logged (tracking is disabled)"


def test_local_mode_writes_a_run_with_no_account_and_no_banner(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    tracker = Tracker(experiment="t", mode="local", log_dir=tmp_path / "logs",
                      config={"lr": 1e-4})
    assert tracker.active and tracker.run_id
    tracker.log({"train/loss": 1.0, "train/acc": 0.5}, step=1)
    tracker.finish()
    assert "swanlab" not in capfd.readouterr().out.lower()  # SwanLab prints banners unmuted
    runs = list((tmp_path / "logs").glob("run-*"))
    assert len(runs) == 1 and (runs[0] / "files" / "config.yaml").exists()
    assert tracker.line() == (f"SwanLab run 't' logged to {tmp_path / 'logs'} (local mode; "
                              f"view: swanlab watch {tmp_path / 'logs'}, deprecated upstream)")


def _noise_dataset(root: Path) -> Path:
    """Write root/<class>/<clip>.wav: three classes of the same white noise, 8 clips each, 1 s.

    No model can tell them apart, so the test set holds mistakes to log.
    """
    rng = np.random.default_rng(0)
    for label in ("high", "low", "mid"):
        for index in range(8):
            samples = rng.normal(0, 0.1, 22050).astype(np.float32)
            write_wav(root / label / f"{label}.{index:05d}.wav", samples)
    return root


@pytest.mark.slow
def test_a_local_training_run_logs_swanlabs_chart_and_the_mistakes_quietly(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    manifest = make_splits(build_manifest(_noise_dataset(tmp_path / "noise"),
                                          progress=False)[0], "random")
    recipe = replace(apply_profile(get_recipe("baseline"), "smoke"), epochs=1,
                     clips_per_class=None, pretrained=False)
    result = run_experiment(manifest, recipe, tmp_path / "runs" / "noise", seed=0,
                            progress=False, tracking_mode="local", cache=False)
    log_dir = tmp_path / "runs" / "swanlog"
    said = [line for line in capfd.readouterr().out.splitlines() if "swanlab" in line.lower()]
    assert said == [f"SwanLab run 'noise' logged to {log_dir} (local mode; "
                    f"view: swanlab watch {log_dir}, deprecated upstream)"]  # one line, no banner

    [run] = log_dir.glob("run-*")
    test = result.metrics["test"]
    wrong = test["num_clips"] - round(test["accuracy"] * test["num_clips"])
    assert wrong >= 1  # noise cannot be classified
    [chart] = (run / "media" / "echarts").glob("*.json")
    assert "heatmap" in chart.read_text().lower()
    assert len(list((run / "media" / "audio").glob("*.wav"))) == min(wrong, 4)
    # The mistakes' log-Mels, and the matrix as an image for the local dashboard (no echarts).
    assert len(list((run / "media" / "image").glob("*.png"))) == min(wrong, 4) + 1
    assert (tmp_path / "runs" / "noise" / "confusion_matrix.png").exists()
    assert json.loads((tmp_path / "runs" / "noise" / "metrics.json").read_text())["test"]


def test_swanlab_failure_becomes_one_warning(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    import swanlab

    def broken(**_: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(swanlab, "init", broken)
    with pytest.warns(RuntimeWarning, match="No space left"):
        tracker = Tracker(mode="local", log_dir=tmp_path / "logs")
    tracker.log({"train/loss": 1.0}, step=1)  # no exception, no second warning
    tracker.finish()
    assert not tracker.active
    assert tracker.line().endswith("not logged (SwanLab failed: see the warning above)")
