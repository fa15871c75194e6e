"""Train and evaluate: the loop, clip-level evaluation, the epoch loop and the schedule.

Chapter 03 writes `train_one_epoch`, `evaluate` and `fit`, chapter 04 `make_scheduler`; this is
that code. `audiocls train` (`engine.experiment.runner.run_experiment`) runs the same two functions per
epoch, adding a feature cache, checkpoints and resume, AMP, several GPUs and robust tracking.
"""

from __future__ import annotations

import copy
import math
import random
import time

import numpy as np
import pandas as pd
import swanlab
import torch
from torch import nn
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    LinearLR,
    SequentialLR,
    StepLR,
)

from .errors import AudioclsError
from .predict import predict_clips


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) random number generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_one_epoch(model, loader, loss_fn, optimizer, device, augment=None,  #@save
                    accumulate=1, amp=False):
    """Train `model` for one pass over `loader`; return the mean loss and accuracy of its segments."""
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    optimizer.zero_grad()
    for step, (segments, targets, _) in enumerate(loader):
        segments, targets = segments.to(device), targets.to(device)  # (batch, n_mels, frames), (batch,)
        labels = targets
        if augment is not None:  # chapter 04: gain, noise, masks; mixup blends the labels too
            segments, labels = augment(segments, targets)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):  # chapter 04: on a GPU
            logits = model(segments)  # (batch, classes)
            loss = loss_fn(logits, labels)  # the mean over the batch
        if not torch.isfinite(loss):
            raise AudioclsError(f"The training loss became {loss.item()}: lower the learning rate "
                                "or look for NaN in the inputs")
        (loss / accumulate).backward()  # gradients add up until the optimizer steps
        if (step + 1) % accumulate == 0 or step + 1 == len(loader):
            optimizer.step()
            optimizer.zero_grad()
        total_loss += loss.item() * len(targets)
        # with mixup a segment's label is a blend: count it right when it names the larger share
        dominant = labels.argmax(dim=1) if labels.ndim == 2 else targets
        correct += (logits.argmax(dim=1) == dominant).sum().item()
        seen += len(targets)
    return total_loss / seen, correct / seen


def evaluate(model, loader, device, amp=False):  #@save
    """Score whole clips (their windows' predictions averaged): return loss, accuracy, probabilities."""
    probabilities = predict_clips(model, loader, device, amp)  # (clips, classes)
    targets = torch.tensor(loader.dataset.targets)
    loss = nn.functional.nll_loss(probabilities.clamp_min(1e-8).log(), targets).item()
    accuracy = (probabilities.argmax(dim=1) == targets).float().mean().item()
    return loss, accuracy, probabilities


def is_better(val_acc, val_loss, best):  #@save
    """Return True when (val_acc, val_loss) beats the pair `best`: higher accuracy, or as high, lower loss."""
    return (val_acc, -val_loss) > (best[0], -best[1])


def fit(model, train_loader, val_loader, loss_fn, optimizer, epochs, device,  #@save
        scheduler=None, augment=None, accumulate=1, amp=False):
    """Train for `epochs`, log each one to SwanLab, and keep the weights of the best validation epoch."""
    history, best, best_epoch, best_state = [], (-1.0, math.inf), 0, None
    for epoch in range(1, epochs + 1):
        started, lr = time.perf_counter(), optimizer.param_groups[0]["lr"]
        train_loss, train_acc = train_one_epoch(model, train_loader, loss_fn, optimizer, device,
                                                augment, accumulate, amp)
        if scheduler is not None:
            scheduler.step()  # once per epoch
        val_loss, val_acc, _ = evaluate(model, val_loader, device, amp)
        history.append({"epoch": epoch, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
                        "val_loss": val_loss, "val_acc": val_acc,
                        "seconds": time.perf_counter() - started})
        if swanlab.has_run():  # after swanlab.init (any mode); without one, swanlab.log raises
            swanlab.log({"train/loss": train_loss, "train/acc": train_acc, "train/lr": lr,
                         "val/loss": val_loss, "val/acc": val_acc}, step=epoch)
        print(f"epoch {epoch:>2}/{epochs}  lr {lr:.1e}  train loss {train_loss:.3f} acc "
              f"{train_acc:.3f}  val loss {val_loss:.3f} acc {val_acc:.3f}")
        if is_better(val_acc, val_loss, best):
            best, best_epoch, best_state = (val_acc, val_loss), epoch, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)  # the best epoch's weights
    return pd.DataFrame(history), best_epoch


def make_scheduler(optimizer, recipe):  #@save
    """Build the recipe's schedule, stepped once per epoch: linear warmup, then steps or a cosine."""
    warmup = recipe.warmup_epochs
    if recipe.schedule == "cosine":  # from the full rate down towards 0 at the last epoch
        after = CosineAnnealingLR(optimizer, T_max=max(1, recipe.epochs - warmup))
    elif recipe.schedule == "step" and recipe.step_size:  # divide by 1/gamma every step_size epochs
        after = StepLR(optimizer, step_size=recipe.step_size, gamma=recipe.gamma)
    elif recipe.schedule == "step":
        after = ConstantLR(optimizer, factor=1.0)  # step_size 0: a constant rate
    else:
        raise AudioclsError(f"Unknown schedule {recipe.schedule!r}; choose 'step' or 'cosine'")
    if warmup == 0:
        return after
    # Warmup: epoch e (from 0) runs at (e + 1) / warmup of the rate, reaching it at epoch warmup - 1.
    ramp = LinearLR(optimizer, start_factor=1 / warmup, total_iters=max(1, warmup - 1))
    return SequentialLR(optimizer, [ramp, after], milestones=[warmup])


def scheduled_rates(recipe, lr=1.0):
    """Return the learning rate of each epoch that `make_scheduler` gives `recipe`, starting
    from `lr` (1.0: the factors), stepped once per epoch as `fit` steps it."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = make_scheduler(optimizer, recipe)
    rates = []
    for _ in range(recipe.epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates
