"""The bar to beat (chapter 05): per-clip MFCC and log-Mel statistics, and scikit-learn classifiers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio

from audiocls_utils.baseline import (
    classical_classifier,
    clip_statistics,
    fit_and_score,
    learned_numbers,
    statistics_table,
)
from audiocls_utils.config import FeatureConfig
from audiocls_utils.data import build_manifest, class_names, limit_per_class, make_splits
from audiocls_utils.errors import AudioclsError
from audiocls_utils.features import LogMel, extract_log_mels


def test_statistics_of_a_steady_log_mel_are_its_mfcc_and_no_spread() -> None:
    log_mel = torch.linspace(-60, 0, 16).unsqueeze(1).repeat(1, 50)  # (16 bands, 50 frames), constant in time
    vector = clip_statistics(log_mel, n_mfcc=5)
    assert vector.shape == (4 * 5 + 2 * 16,)
    dct = torchaudio.functional.create_dct(5, 16, norm="ortho")
    mfcc_mean, mfcc_std, delta_mean, delta_std, mel_mean, mel_std = np.split(vector, [5, 10, 15, 20, 36])
    np.testing.assert_allclose(mfcc_mean, (dct.T @ log_mel[:, 0]).numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(mel_mean, log_mel[:, 0].numpy(), atol=1e-4)
    for spread in (mfcc_std, delta_std, mel_std, delta_mean):
        np.testing.assert_allclose(spread, 0.0, atol=1e-3)


def test_mfcc_means_agree_with_torchaudios_mfcc_transform() -> None:
    config = FeatureConfig(sample_rate=16000, n_fft=512, hop_length=160, n_mels=40)
    generator = torch.Generator().manual_seed(0)
    waveform = torch.sin(torch.arange(16000) * 0.07) * 0.3 + 0.01 * torch.randn(16000, generator=generator)
    theirs = torchaudio.transforms.MFCC(sample_rate=16000, n_mfcc=13, melkwargs={
        "n_fft": 512, "hop_length": 160, "n_mels": 40})(waveform)
    ours = clip_statistics(LogMel(config)(waveform), n_mfcc=13)
    np.testing.assert_allclose(ours[:13], theirs.mean(dim=1).numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(ours[13:26], theirs.std(dim=1, correction=0).numpy(), rtol=1e-4, atol=1e-3)


def test_a_one_frame_clip_has_finite_statistics() -> None:
    assert np.isfinite(clip_statistics(torch.full((8, 1), -20.0), n_mfcc=4)).all()


def test_statistics_table_reads_float16_arrays_and_stacks_one_row_per_clip() -> None:
    log_mels = [np.full((8, frames), -10.0, dtype=np.float16) for frames in (3, 40, 7)]
    table = statistics_table(log_mels, n_mfcc=4)
    assert table.shape == (3, 4 * 4 + 2 * 8) and table.dtype == np.float32


def _blobs(seed: int, per_class: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian classes in 5 dimensions."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0] * 5, [10.0] * 5, [-10.0, 10.0, -10.0, 10.0, -10.0]])
    features = np.concatenate([rng.normal(c, 1.0, (per_class, 5)) for c in centres])
    return features, np.repeat(np.arange(3), per_class)


@pytest.mark.parametrize("kind", ["logistic", "svm"])
def test_classifiers_separate_separable_classes_and_time_themselves(kind: str) -> None:
    classifier = classical_classifier(kind)
    scores = fit_and_score(classifier, _blobs(0), _blobs(1), ["a", "b", "c"])
    assert scores["accuracy"] == 1.0 and scores["num_clips"] == 90 and scores["seconds"] > 0


def test_learned_numbers_count_weights_or_support_vectors() -> None:
    features, targets = _blobs(0)
    logistic = classical_classifier("logistic").fit(features, targets)
    assert learned_numbers(logistic) == 3 * 5 + 3  # one weight per feature and class, one bias per class
    svm = classical_classifier("svm").fit(features, targets)
    support = svm[-1].support_vectors_.shape[0]
    assert learned_numbers(svm) == support * 5 + 2 * support + 3  # vectors, dual coefficients, biases


def test_an_unknown_classifier_is_named() -> None:
    with pytest.raises(AudioclsError, match="'forest'"):
        classical_classifier("forest")


@pytest.mark.slow
def test_statistics_recognise_digits_of_a_speaker_never_heard(tmp_path: Path, fsdd: Path) -> None:
    manifest, _ = build_manifest(fsdd, label_pattern="fsdd", progress=False)
    manifest = limit_per_class(make_splits(manifest, "group", seed=42), 30, seed=0)
    speech = FeatureConfig(sample_rate=8000, n_fft=512, hop_length=128, n_mels=64)
    statistics = statistics_table(extract_log_mels(manifest["path"].tolist(), speech, progress=False))
    classes = class_names(manifest)
    targets = np.array([classes.index(label) for label in manifest["label"]])
    train, test = (manifest["split"] == "train").to_numpy(), (manifest["split"] == "test").to_numpy()
    scores = fit_and_score(classical_classifier("logistic"), (statistics[train], targets[train]),
                           (statistics[test], targets[test]), classes)
    # Chance is 0.1. Measured on this split: 0.307 (cap seed 0) and 0.313 (seed 1), below the CNN
    # recipes (0.41 to 0.62, docs/results.md): statistics lose the order of the sounds in a word.
    # The floor is a regression guard, not the benchmark.
    assert scores["num_clips"] == 300 and scores["accuracy"] >= 0.25, scores["accuracy"]
