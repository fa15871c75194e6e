""""None of these" on the command line: train saves a calibrated threshold, predict answers unknown."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import tone, untrained_bundle, write_wav

from audiocls_utils.abstain import calibrate_threshold
from audiocls_utils.engine.commands.cli import main
from audiocls_utils.predict import Predictor, load_bundle


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `audiocls ARGS` in-process and return (status, stdout, stderr)."""
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Return an untrained 3-class model saved with threshold 0.99 (it is never that sure), a
    tone and a nearly silent tone (about -83 dBFS)."""
    bundle = untrained_bundle()
    bundle["reject_threshold"] = 0.99
    torch.save(bundle, tmp_path / "model.pt")
    clip = write_wav(tmp_path / "clip.wav", tone(440.0, 1.5, 8000), 8000)
    quiet = write_wav(tmp_path / "quiet.wav", tone(440.0, 1.5, 8000, amplitude=1e-4), 8000)
    return tmp_path / "model.pt", clip, quiet


def test_a_clip_below_the_threshold_is_unknown_with_its_best_guess(
        files: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    model, clip, quiet = files
    top = Predictor.from_file(model, reject=False).predict([clip], top_k=2)[0]["top"]
    guess = ", ".join(f"{t['label']} {t['probability']:.2f}" for t in top)
    status, out, err = run(capsys, "predict", "--model", str(model), str(clip), str(quiet),
                           "--top-k", "2")
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == (f"{clip}: unknown (low confidence: below the threshold 0.99; best guess "
                        f"{guess})")
    # -83 dBFS for the sine, about -82 once written as 16-bit samples
    assert re.match(rf"{re.escape(str(quiet))}: unknown \(silence, -8[23] dBFS; best guess ", lines[1])

    status, out, _ = run(capsys, "predict", "--model", str(model), str(clip), "--json")
    (answer,) = json.loads(out)
    assert answer["label"] == "unknown" and answer["reason"] == "low confidence"
    assert answer["threshold"] == 0.99 and answer["top"][0]["label"] == top[0]["label"]


def test_no_reject_and_threshold_override_the_saved_threshold(
        files: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    model, clip, quiet = files
    top = Predictor.from_file(model, reject=False).predict([clip], top_k=3)[0]["top"]
    plain = f"{clip}: " + ", ".join(f"{t['label']} {t['probability']:.2f}" for t in top)
    status, out, _ = run(capsys, "predict", "--model", str(model), str(clip), "--no-reject")
    assert status == 0 and out.strip() == plain  # the output every earlier version printed
    status, out, _ = run(capsys, "predict", "--model", str(model), str(clip), str(quiet),
                         "--threshold", "0")
    assert status == 0 and out.splitlines()[0] == plain  # 0 rejects nothing on confidence
    assert "unknown (silence" in out.splitlines()[1]  # the loudness gate still holds
    status, _, err = run(capsys, "predict", "--model", str(model), str(clip), "--threshold", "nan")
    assert status == 2 and err.count("\n") == 1 and "--threshold must be a probability" in err


def test_a_model_saved_without_a_threshold_still_predicts_and_says_rejection_is_off(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = untrained_bundle()
    bundle.pop("reject_threshold", None)  # as every model saved before the threshold existed
    torch.save(bundle, tmp_path / "old.pt")
    clips = [str(write_wav(tmp_path / f"{i}.wav", tone(300.0 + 100 * i, 1.0, 8000), 8000))
             for i in range(2)]
    status, out, err = run(capsys, "predict", "--model", str(tmp_path / "old.pt"), *clips)
    assert status == 0 and len(out.splitlines()) == 2 and "unknown" not in out
    assert err.count("\n") == 1  # said once, not once per file
    assert "has no reject threshold (saved before audiocls calibrated one), so rejection of " \
           "unsure clips is off" in err


@pytest.mark.slow
def test_train_saves_the_threshold_calibrated_on_the_validation_clips(
        tone_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    status, _, _ = run(capsys, "train", "--data-dir", str(tone_dataset), "--profile", "smoke",
                       "--output-dir", str(out), "--tracking", "disabled", "--no-cache")
    assert status == 0
    saved = load_bundle(out / "model.pt")["reject_threshold"]
    # A second computation: the saved model's probabilities for the validation clips, as
    # `predict` computes them, calibrated again.
    manifest = pd.read_csv(out / "manifest.csv")
    val = manifest[manifest["split"] == "val"]
    predictor = Predictor.from_file(out / "model.pt")
    probabilities = predictor.probabilities(val["path"].tolist())
    targets = torch.tensor([predictor.class_names.index(label) for label in val["label"]])
    assert saved == pytest.approx(calibrate_threshold(probabilities, targets), abs=1e-4)
    rejection = json.loads((out / "metrics.json").read_text())["rejection"]
    assert rejection["threshold"] == pytest.approx(saved, abs=1e-4) and rejection["keep"] == 0.95
    assert 0 <= rejection["test_rejected"] <= 1
