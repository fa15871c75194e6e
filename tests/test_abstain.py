"""Saying "none of these": the loudness gate, the threshold calibrated on validation, and the
answer `decide` gives; each against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tone, write_wav

from audiocls_utils.abstain import SILENCE_DB, calibrate_threshold, decide, loudness_db
from audiocls_utils.audio import describe_audio
from audiocls_utils.errors import AudioclsError

NAMES = ["cat", "dog"]


def test_loudness_of_a_full_scale_sine_is_minus_3_dbfs_and_of_zeros_far_below_the_gate() -> None:
    sine = torch.sin(torch.linspace(0, 200 * math.pi, 8000))  # RMS 1/sqrt(2)
    assert loudness_db(sine) == pytest.approx(-3.01, abs=0.02)
    assert loudness_db(0.001 * sine) == pytest.approx(-63.01, abs=0.02)  # 0.001 = -60 dB
    assert loudness_db(torch.zeros(100)) < SILENCE_DB - 100
    assert loudness_db(torch.ones(2, 50)) == pytest.approx(0.0)  # any shape


def test_the_streamed_description_measures_the_same_loudness(tmp_path) -> None:
    samples = tone(440.0, seconds=1.5, sample_rate=8000, amplitude=0.05)
    path = write_wav(tmp_path / "quiet.wav", samples, 8000, subtype="FLOAT")
    assert describe_audio(path).loudness_db == pytest.approx(loudness_db(torch.from_numpy(samples)),
                                                             abs=1e-3)


def _probabilities(tops: list[float]) -> torch.Tensor:
    """Two-class probabilities whose first class has each of `tops`."""
    top = torch.tensor(tops)
    return torch.stack([top, 1 - top], dim=1)


def test_threshold_keeps_the_asked_fraction_of_correct_clips() -> None:
    # 10 correct clips with top probabilities 0.55, 0.60, ..., 1.0; two wrong ones (label 1).
    tops = [0.55 + 0.05 * i for i in range(10)]
    probabilities = torch.cat([_probabilities(tops), _probabilities([0.99, 0.51])])
    labels = torch.tensor([0] * 10 + [1, 1])
    # keep 0.9: floor(0.1 * 10) = 1 correct clip rejected, the threshold is the 2nd lowest, 0.60
    assert calibrate_threshold(probabilities, labels, keep=0.9) == pytest.approx(0.60)
    # keep 0.75: floor(2.5) = 2 rejected -> 0.65; keep 1.0: none rejected -> the lowest, 0.55
    assert calibrate_threshold(probabilities, labels, keep=0.75) == pytest.approx(0.65)
    assert calibrate_threshold(probabilities, labels, keep=1.0) == pytest.approx(0.55)
    # the wrong clips' confidence (0.99) plays no part
    kept = (probabilities.max(dim=1).values >= 0.60)[:10].float().mean()
    assert kept == pytest.approx(0.9)


def test_threshold_edge_cases_one_clip_and_no_correct_clip() -> None:
    assert calibrate_threshold(_probabilities([0.7]), torch.tensor([0]), keep=0.5) == pytest.approx(0.7)
    assert calibrate_threshold(_probabilities([0.7, 0.8]), torch.tensor([1, 1])) == 0.0
    with pytest.raises(AudioclsError, match="one label per clip"):
        calibrate_threshold(_probabilities([0.7, 0.8]), torch.tensor([0]))
    with pytest.raises(AudioclsError, match="keep"):
        calibrate_threshold(_probabilities([0.7]), torch.tensor([0]), keep=0.0)


def test_decide_answers_rejects_when_unsure_and_gates_silence_first() -> None:
    sure, unsure = torch.tensor([0.2, 0.8]), torch.tensor([0.45, 0.55])
    assert decide(sure, NAMES, threshold=0.6) == {"label": "dog", "top": "dog",
                                                   "probability": pytest.approx(0.8), "reason": None}
    answer = decide(unsure, NAMES, threshold=0.6)
    assert (answer["label"], answer["top"], answer["reason"]) == ("unknown", "dog", "low confidence")
    assert decide(unsure, NAMES)["label"] == "dog"  # no threshold: never unsure
    assert decide(sure, NAMES, threshold=0.8)["label"] == "dog"  # at the threshold: kept
    silent = decide(sure, NAMES, threshold=0.6, loudness=SILENCE_DB - 1)
    assert (silent["label"], silent["reason"]) == ("unknown", "silence")
    assert decide(sure, NAMES, loudness=SILENCE_DB + 1)["label"] == "dog"
    assert decide(sure, NAMES, loudness=-90.0, silence_db=None)["label"] == "dog"
