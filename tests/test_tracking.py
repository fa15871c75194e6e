"""Tracking: SwanLab logs locally with no account, and its failures never stop training."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from audiocls_utils.engine.tracking import Tracker, resolve_mode


def test_mode_comes_from_argument_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWANLAB_MODE", "offline")
    assert resolve_mode(None) == "offline"
    assert resolve_mode("disabled") == "disabled"
    monkeypatch.delenv("SWANLAB_MODE")
    assert resolve_mode(None) == "local"
    with pytest.raises(ValueError, match="bogus"):
        resolve_mode("bogus")


def test_disabled_tracker_does_nothing(tmp_path: Path) -> None:
    tracker = Tracker(mode="disabled", log_dir=tmp_path / "logs")
    tracker.log({"train/loss": 1.0}, step=1)
    tracker.finish()
    assert not (tmp_path / "logs").exists()


def test_local_mode_writes_a_run_with_no_account(tmp_path: Path) -> None:
    tracker = Tracker(experiment="t", mode="local", log_dir=tmp_path / "logs",
                      config={"lr": 1e-4})
    assert tracker.active and tracker.run_id
    tracker.log({"train/loss": 1.0, "train/acc": 0.5}, step=1)
    figure = plt.figure()
    tracker.log_figure("test/confusion_matrix", figure)
    plt.close(figure)
    tracker.finish()
    runs = list((tmp_path / "logs").glob("run-*"))
    assert len(runs) == 1 and (runs[0] / "files" / "config.yaml").exists()


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
