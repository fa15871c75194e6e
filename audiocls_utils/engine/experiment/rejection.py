"""After training: calibrate the "none of these" threshold on the validation set, save it with
the model, and say in metrics.json what it does to the test set."""

from __future__ import annotations

from typing import Any

import torch

from ...abstain import calibrate_threshold

KEEP = 0.95  # the fraction of correctly classified validation clips the threshold keeps


def calibrate_rejection(bundle: dict[str, Any], results: dict[str, Any],
                        probabilities: dict[str, torch.Tensor], targets: dict[str, list[int]],
                        keep: float = KEEP) -> None:
    """Set `bundle["reject_threshold"]` from the validation clips (None without any) and add
    `results["rejection"]`: the threshold, and the share of test clips below it with the test
    accuracy on the clips kept."""
    if "val" not in probabilities:
        bundle["reject_threshold"] = None
        results["rejection"] = {"threshold": None, "why": "no validation split to calibrate on"}
        return
    threshold = calibrate_threshold(probabilities["val"], torch.tensor(targets["val"]), keep=keep)
    bundle["reject_threshold"] = threshold
    summary: dict[str, Any] = {"threshold": round(threshold, 4), "keep": keep}
    if "test" in probabilities:
        top, predicted = probabilities["test"].max(dim=1)
        kept = top >= threshold
        correct = predicted == torch.tensor(targets["test"])
        summary["test_rejected"] = round(float((~kept).float().mean()), 4)
        summary["test_accuracy_kept"] = (round(float(correct[kept].float().mean()), 4)
                                         if kept.any() else None)
    results["rejection"] = summary
