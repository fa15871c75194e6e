"""Metrics worked out by hand."""

from __future__ import annotations

import pytest

from audiocls_utils.metrics import classification_metrics, format_report


def test_metrics_match_a_hand_computation() -> None:
    targets = [0, 0, 1, 1, 2, 2]
    predictions = [0, 1, 1, 1, 2, 0]
    metrics = classification_metrics(targets, predictions, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # F1 per class: a: p=1/2 r=1/2 -> 1/2; b: p=2/3 r=1 -> 4/5; c: p=1 r=1/2 -> 2/3
    assert metrics["macro_f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert metrics["per_class"]["b"]["recall"] == 1.0
    assert "macro-F1 0.656" in format_report(metrics, ["a", "b", "c"])


def test_a_class_never_seen_still_gets_a_row() -> None:
    metrics = classification_metrics([0, 0], [0, 0], ["a", "b"])
    assert metrics["confusion_matrix"] == [[2, 0], [0, 0]]
    assert metrics["per_class"]["b"]["support"] == 0
