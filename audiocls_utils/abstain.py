"""Say "none of these": a loudness gate for silence and a confidence threshold from validation.

Written and measured in chapter 06. A classifier trained on ten classes gives every input a
probability over those ten, silence and a vacuum cleaner included; these functions decide when
to answer `unknown` instead. Nothing here imports training code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from .errors import AudioclsError

SILENCE_DB = -60.0  # dBFS (clip RMS): quieter is "silence"; FSDD's quietest speech is -53
UNKNOWN = "unknown"  # the label of a clip the model abstains on


def loudness_db(waveform):  #@save
    """Return a waveform's RMS level in dB below full scale (0 dBFS: a full-scale square wave)."""
    waveform = torch.as_tensor(waveform, dtype=torch.float64)
    if waveform.numel() == 0:
        return -math.inf
    mean_square = waveform.square().mean()  # power, averaged over every sample and channel
    return float(10 * torch.log10(mean_square.clamp_min(1e-20)))  # 1e-20: -200 dB for zeros


def calibrate_threshold(probabilities, labels, keep=0.95):  #@save
    """Return the top probability below which a clip is rejected, from validation clips.

    `probabilities` (clips, classes) and true `labels` (clips,) are the validation set's. Among
    the clips the model classifies correctly, the threshold is the lowest top probability that
    keeps a fraction `keep` of them: sorted from least to most confident, the first
    floor((1 - keep) * correct) are rejected and the next one's probability is the threshold
    (a clip at exactly the threshold is kept). One correct clip: its probability. No correct
    clip: 0.0, which rejects nothing (the model is wrong on everything, so confidence tells
    nothing; `decide` then labels every clip).
    """
    probabilities, labels = torch.as_tensor(probabilities), torch.as_tensor(labels)
    if probabilities.ndim != 2 or labels.shape != probabilities.shape[:1] or not len(labels):
        raise AudioclsError(f"calibrate_threshold needs (clips, classes) probabilities and one "
                            f"label per clip; got {tuple(probabilities.shape)} and "
                            f"{tuple(labels.shape)}")
    if not 0 < keep <= 1:
        raise AudioclsError(f"keep is the fraction of correct clips to keep, in (0, 1], not {keep}")
    top, predicted = probabilities.max(dim=1)
    correct = top[predicted == labels].sort().values  # least confident first
    if len(correct) == 0:
        return 0.0
    rejected = math.floor((1 - keep) * len(correct) + 1e-9)  # 1e-9: (1 - 0.9) * 10 is 0.999...
    return float(correct[min(rejected, len(correct) - 1)])


def decide(probabilities, class_names, threshold=None, loudness=None,  #@save
           silence_db=SILENCE_DB):
    """Return a clip's answer: its top class, or "unknown" when it is silent or unsure.

    `loudness` (dBFS, `loudness_db`) below `silence_db` gives reason "silence"; a top probability
    below `threshold` gives "low confidence"; `threshold` None never rejects on confidence and
    `loudness` None never on silence.
    """
    probabilities = torch.as_tensor(probabilities).flatten()
    probability, index = probabilities.max(dim=0)
    top = class_names[int(index)]
    reason = None
    if loudness is not None and silence_db is not None and loudness < silence_db:
        reason = "silence"
    elif threshold is not None and float(probability) < threshold:
        reason = "low confidence"
    return {"label": UNKNOWN if reason else top, "top": top,
            "probability": float(probability), "reason": reason}


def abstain_table(decisions: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Return the fraction of `decisions` answered `unknown`, in all and for each reason."""
    count = max(1, len(decisions))
    reasons = [d["reason"] for d in decisions]
    return {"unknown": sum(r is not None for r in reasons) / count,
            "silence": reasons.count("silence") / count,
            "low confidence": reasons.count("low confidence") / count}
