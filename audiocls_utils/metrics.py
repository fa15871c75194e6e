"""Score predictions: accuracy, macro-F1, per-class report and confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score


def classification_metrics(
    targets: Sequence[int], predictions: Sequence[int], class_names: Sequence[str]
) -> dict[str, Any]:
    """Return accuracy and macro-F1 (fractions 0-1), the confusion matrix and a per-class report."""
    labels = list(range(len(class_names)))
    targets, predictions = np.asarray(targets), np.asarray(predictions)
    report = classification_report(
        targets, predictions, labels=labels, target_names=list(class_names),
        output_dict=True, zero_division=0,
    )
    return {
        "accuracy": float(accuracy_score(targets, predictions)),
        "macro_f1": float(f1_score(targets, predictions, labels=labels, average="macro",
                                   zero_division=0)),
        "num_clips": int(len(targets)),
        "confusion_matrix": confusion_matrix(targets, predictions, labels=labels).tolist(),
        "per_class": {name: {k: float(v) for k, v in report[name].items()} for name in class_names},
    }


def format_report(metrics: dict[str, Any], class_names: Sequence[str]) -> str:
    """Return a small text table: per-class precision, recall, F1 and support."""
    lines = [f"{'class':<12} {'precision':>9} {'recall':>7} {'f1':>6} {'clips':>6}"]
    for name in class_names:
        row = metrics["per_class"][name]
        lines.append(f"{name:<12} {row['precision']:>9.3f} {row['recall']:>7.3f} "
                     f"{row['f1-score']:>6.3f} {int(row['support']):>6d}")
    lines.append(f"accuracy {metrics['accuracy']:.3f}   macro-F1 {metrics['macro_f1']:.3f}   "
                 f"({metrics['num_clips']} clips)")
    return "\n".join(lines)


def format_confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> str:
    """Return the confusion matrix as text: one row per true class, one column per prediction."""
    corner = "true \\ predicted"
    width = max(len(corner), *(len(name) for name in class_names)) + 1
    short = [name[:6] for name in class_names]  # column heads stay narrow
    column = max(4, *(len(name) for name in short)) + 1
    lines = [corner.ljust(width) + "".join(name.rjust(column) for name in short)]
    for name, row in zip(class_names, matrix, strict=True):
        lines.append(name.ljust(width) + "".join(str(int(count)).rjust(column) for count in row))
    return "\n".join(lines)


def misclassified(targets, probabilities, max_clips=4):  #@save
    """Return the positions of up to `max_clips` misclassified clips, the most confident first."""
    confidence, predictions = probabilities.max(dim=1)  # (clips,), (clips,)
    wrong = [i for i, (p, t) in enumerate(zip(predictions.tolist(), targets, strict=True)) if p != t]
    return sorted(wrong, key=lambda i: -float(confidence[i]))[:max_clips]
