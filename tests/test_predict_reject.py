"""`Predictor` abstains: a clip below the saved threshold, or silent, is labelled "unknown" with
its top class and probability; an older model file without a threshold still loads; reject=False
labels everything."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import BUNDLE_CLASSES, tone, untrained_bundle, write_wav

from audiocls_utils.errors import AudioclsError
from audiocls_utils.files import load_torch, save_torch
from audiocls_utils.predict import MODEL_FORMAT, Predictor


@pytest.fixture(scope="module")
def bundle() -> dict:
    return untrained_bundle()


@pytest.fixture
def clips(tmp_path: Path) -> dict[str, Path]:
    loud = tone(440.0, seconds=1.5) + np.random.default_rng(0).normal(0, 0.05, 33075).astype(np.float32)
    quiet = np.random.default_rng(1).normal(0, 0.0002, 33075).astype(np.float32)  # about -74 dBFS
    return {"loud": write_wav(tmp_path / "loud.wav", loud), "quiet": write_wav(tmp_path / "quiet.wav", quiet)}


def test_the_threshold_travels_in_the_model_file(tmp_path: Path, bundle: dict) -> None:
    save_torch({**bundle, "reject_threshold": 0.75}, tmp_path / "model.pt")
    loaded = load_torch(tmp_path / "model.pt")
    assert loaded["format"] == MODEL_FORMAT and loaded["reject_threshold"] == 0.75
    assert Predictor.from_file(tmp_path / "model.pt").threshold == 0.75
    assert untrained_bundle()["reject_threshold"] is None  # model_bundle's default


def test_below_the_threshold_is_unknown_with_its_top_class(bundle: dict, clips: dict) -> None:
    plain = Predictor(bundle).predict([clips["loud"]])[0]
    top = plain["top"][0]
    assert plain["label"] == top["label"] and plain["reason"] is None  # no threshold saved
    strict = Predictor({**bundle, "reject_threshold": min(1.0, top["probability"] + 0.01)})
    answer = strict.predict([clips["loud"]])[0]
    assert (answer["label"], answer["reason"]) == ("unknown", "low confidence")
    assert answer["top"][0] == top  # the top class and its probability are still given
    lenient = Predictor({**bundle, "reject_threshold": top["probability"] - 0.01})
    assert lenient.predict([clips["loud"]])[0]["label"] == top["label"]


def test_an_older_model_file_without_the_key_still_labels(tmp_path: Path, bundle: dict,
                                                          clips: dict) -> None:
    older = {k: v for k, v in bundle.items() if k != "reject_threshold"}
    save_torch(older, tmp_path / "old.pt")
    predictor = Predictor.from_file(tmp_path / "old.pt")
    assert predictor.threshold is None
    assert predictor.predict([clips["loud"]])[0]["label"] in BUNDLE_CLASSES


def test_silence_is_unknown_and_reject_false_turns_both_off(bundle: dict, clips: dict) -> None:
    saved = {**bundle, "reject_threshold": 1.0}  # rejects every clip on confidence
    answer = Predictor(saved).predict([clips["quiet"]])[0]
    assert (answer["label"], answer["reason"]) == ("unknown", "silence")
    assert answer["loudness_db"] < -60
    off = Predictor(saved, reject=False)
    assert all(a["label"] in BUNDLE_CLASSES and a["reason"] is None
               for a in off.predict([clips["quiet"], clips["loud"]]))
    override = Predictor(saved, threshold=0.0).predict([clips["loud"]])[0]  # the caller's wins
    assert override["label"] in BUNDLE_CLASSES


def test_decide_on_probabilities_uses_the_predictors_settings(bundle: dict) -> None:
    predictor = Predictor({**bundle, "reject_threshold": 0.5})
    probabilities = torch.tensor([0.4, 0.35, 0.25])
    assert predictor.decide(probabilities, loudness=-20.0)["label"] == "unknown"
    assert predictor.decide(torch.tensor([0.1, 0.8, 0.1]), -20.0)["label"] == BUNDLE_CLASSES[1]


@pytest.mark.parametrize("threshold", [1.5, -0.1, "high", True])
def test_a_threshold_that_is_no_probability_is_refused_in_one_line(bundle: dict, threshold) -> None:
    with pytest.raises(AudioclsError, match="reject_threshold must be a probability") as error:
        Predictor({**bundle, "reject_threshold": threshold})
    assert "\n" not in str(error.value)
    with pytest.raises(AudioclsError, match="threshold must be a probability"):
        Predictor(bundle, threshold=threshold)
