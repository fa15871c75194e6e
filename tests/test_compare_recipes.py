"""benchmarks/compare_recipes.py: the README's accuracy table, including the last-epoch test score."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import compare_recipes  # noqa: E402


def _run(monkeypatch: pytest.MonkeyPatch, data: Path, out: Path, *settings: str) -> pd.DataFrame:
    monkeypatch.setattr(sys, "argv", [
        "compare_recipes.py", "--data-dir", str(data), "--split", "random", "--recipes",
        "baseline", "--profile", "smoke", "--seeds", "0", "--out", str(out), "--set", *settings])
    compare_recipes.main()
    return pd.read_csv(out / "results.csv")


def test_one_epoch_scores_the_same_weights_twice(tmp_path: Path, tone_dataset: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # With one epoch the epoch chosen on validation is the last one: both scores must agree.
    [row] = _run(monkeypatch, tone_dataset, tmp_path / "one", "epochs=1").to_dict("records")
    assert row["best_epoch"] == 1
    assert row["last_epoch_test_accuracy"] == pytest.approx(row["test_accuracy"])
    assert "| test accuracy, last epoch |" in capsys.readouterr().out


def test_the_last_epoch_is_scored_from_its_own_checkpoint(tmp_path: Path, tone_dataset: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Replace the last epoch's weights by an untrained model's: its score must follow them.
    scored = []
    real = compare_recipes.last_epoch_test_accuracy

    def spy(result: compare_recipes.TrainResult) -> float:
        last = result.output_dir / "checkpoints" / "last.pt"
        state = compare_recipes.load_torch(last)
        for key, value in state["model"].items():
            if key.endswith("fc.weight"):
                value.zero_()  # every class scores the same: argmax picks class 0
            elif key.endswith("fc.bias"):
                value.copy_(torch.arange(len(value), 0, -1, dtype=value.dtype))
        torch.save(state, last)
        scored.append(real(result))
        return scored[-1]

    monkeypatch.setattr(compare_recipes, "last_epoch_test_accuracy", spy)
    [row] = _run(monkeypatch, tone_dataset, tmp_path / "zeroed", "epochs=1").to_dict("records")
    classes = pd.read_csv(tmp_path / "zeroed" / "baseline-seed0" / "manifest.csv")
    test = classes[classes["split"] == "test"]
    first_class = sorted(classes["label"].unique())[0]
    assert row["last_epoch_test_accuracy"] == pytest.approx((test["label"] == first_class).mean())
