"""Training: the chapters' loop, evaluation and epoch loop, and the runner end to end on small
data (it learns, reports on test, resumes, and saves what predict needs)."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from audiocls_utils import train
from audiocls_utils.config import apply_profile, get_recipe
from audiocls_utils.data import SegmentDataset, build_manifest, make_splits
from audiocls_utils.engine.experiment.runner import run_experiment
from audiocls_utils.predict import Predictor, load_bundle
from audiocls_utils.train import evaluate, fit, scheduled_rates, train_one_epoch


def _quick(recipe_name: str = "baseline", **changes: object):  # noqa: ANN202
    """Return the smoke profile of a recipe, with a rate that learns in a few epochs.

    Batches of 8 give 3 steps per epoch on 27 training clips: with one step per epoch,
    BatchNorm's running statistics barely move in 4 epochs and eval accuracy depends on luck.
    """
    recipe = apply_profile(get_recipe(recipe_name), "smoke")
    return replace(recipe, **{"lr": 1e-3, "epochs": 4, "clips_per_class": None, "batch_size": 8,
                              **changes})


def test_scheduler_follows_the_recipe_and_needs_no_verbose_argument() -> None:
    # The original recipe passed StepLR(verbose=True), which recent PyTorch rejects.
    recipe = get_recipe("advanced")
    # 5 warmup epochs at 1/5..5/5 of the rate, then StepLR(10, 0.1): 10 at 1, 10 at 0.1, 5 at 0.01.
    expected = [0.2, 0.4, 0.6, 0.8, 1.0] + [1.0] * 10 + [0.1] * 10 + [0.01] * 5
    assert scheduled_rates(recipe, lr=recipe.lr) == pytest.approx([recipe.lr * f for f in expected])


@pytest.mark.slow
def test_training_beats_chance_and_writes_the_contract_files(
    tmp_path: Path, tone_dataset: Path
) -> None:
    manifest = make_splits(build_manifest(tone_dataset, progress=False)[0], "random")
    result = run_experiment(manifest, _quick(), tmp_path / "run", seed=0, progress=False,
                            tracking_mode="disabled")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["classes"] == ["high", "low", "mid"]
    assert metrics["test"]["accuracy"] >= 0.8  # chance is 1/3; measured 1.0
    assert 0 <= metrics["val"]["macro_f1"] <= 1
    assert len(metrics["test"]["confusion_matrix"]) == 3
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    # The highest validation accuracy; among equals, the lowest validation loss.
    ranked = history.sort_values(["val_acc", "val_loss"], ascending=[False, True])
    assert result.metrics["best_epoch"] == int(ranked["epoch"].iloc[0])

    bundle = load_bundle(tmp_path / "run" / "model.pt")  # weights_only: plain types and tensors
    assert bundle["class_names"] == ["high", "low", "mid"]
    predictor = Predictor(bundle)
    clip = next((tone_dataset / "low").glob("*.wav"))
    top = predictor.predict([clip], top_k=2)[0]["top"]
    assert top[0]["label"] == "low" and len(top) == 2
    assert top[0]["probability"] >= top[1]["probability"]


@pytest.mark.slow
def test_advanced_recipe_with_augmentation_runs(tmp_path: Path, tone_dataset: Path) -> None:
    manifest = make_splits(build_manifest(tone_dataset, progress=False)[0], "random")
    recipe = _quick("advanced", epochs=3)
    assert recipe.noise_std > 0 and recipe.time_mask > 0 and recipe.gain_db > 0
    # The smoke profile scales 5 warmup epochs of 30 to 2 (1 would be no warmup: the shortest
    # that ramps) and a step every 10 to every 1.
    assert (recipe.warmup_epochs, recipe.step_size, recipe.gamma) == (2, 1, 0.1)
    result = run_experiment(manifest, recipe, tmp_path / "adv", seed=0, progress=False,
                            tracking_mode="disabled")
    # Two warmup epochs at 1/2 and 2/2 of the rate, then StepLR's first period at the full rate.
    assert list(result.history["lr"]) == pytest.approx([5e-4, 1e-3, 1e-3])
    assert result.metrics["test"]["accuracy"] > 1 / 3


@pytest.mark.slow
def test_resume_reaches_the_same_result_as_an_uninterrupted_run(
    tmp_path: Path, tone_dataset: Path
) -> None:
    manifest = make_splits(build_manifest(tone_dataset, progress=False)[0], "random")
    recipe = _quick(epochs=3)
    full = run_experiment(manifest, recipe, tmp_path / "full", seed=3, progress=False,
                          tracking_mode="disabled")
    run_experiment(manifest, replace(recipe, epochs=2), tmp_path / "part", seed=3,
                   progress=False, tracking_mode="disabled")
    resumed = run_experiment(manifest, recipe, tmp_path / "part", seed=3, progress=False,
                             tracking_mode="disabled", resume=True)
    assert resumed.history["train_loss"].tolist() == pytest.approx(
        full.history["train_loss"].tolist(), rel=1e-4)
    assert resumed.metrics["test"] == full.metrics["test"]


def test_gradient_accumulation_matches_one_big_batch() -> None:
    torch.manual_seed(0)
    segments, targets = torch.randn(8, 4, 6), torch.randint(0, 3, (8,))

    def one_step(batch_size: int, accumulate: int) -> torch.Tensor:
        torch.manual_seed(1)
        model = nn.Sequential(nn.Flatten(), nn.Linear(24, 3))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        loader = DataLoader(TensorDataset(segments, targets, torch.arange(8)),
                            batch_size=batch_size)
        train_one_epoch(model, loader, nn.CrossEntropyLoss(), optimizer, torch.device("cpu"),
                        accumulate=accumulate)
        return model[1].weight.detach().clone()

    assert torch.allclose(one_step(8, 1), one_step(4, 2), atol=1e-6)
    assert not torch.allclose(one_step(8, 1), one_step(4, 1), atol=1e-4)


class _MeanLogit(nn.Module):
    """Give each segment the logits (its mean value, 0): class 0 wins when the mean is positive."""

    def forward(self, segments: torch.Tensor) -> torch.Tensor:
        mean = segments.mean(dim=(1, 2))
        return torch.stack([mean, torch.zeros_like(mean)], dim=1)


def test_evaluate_scores_clips_by_averaging_their_windows_probabilities() -> None:
    # Clip 0: two windows of 5 frames, all 3.0 then all -1.0; clip 1: one window, all 0.5.
    clips = [torch.cat([torch.full((2, 5), 3.0), torch.full((2, 5), -1.0)], dim=1),
             torch.full((2, 5), 0.5)]
    windows = SegmentDataset(clips, [0, 1], num_frames=5, train=False, hop_frames=5)
    assert len(windows) == 3
    loss, accuracy, probabilities = evaluate(_MeanLogit(), DataLoader(windows, batch_size=2),
                                             torch.device("cpu"))

    def p0(logit: float) -> float:  # the softmax of (logit, 0), class 0
        return 1 / (1 + math.exp(-logit))

    clip0 = (p0(3.0) + p0(-1.0)) / 2  # 0.611: the mean of probabilities, not of logits (0.731)
    clip1 = p0(0.5)  # 0.622: class 0 wins, but the target is 1
    assert probabilities.flatten().tolist() == pytest.approx([clip0, 1 - clip0, clip1, 1 - clip1])
    assert accuracy == pytest.approx(0.5)
    assert loss == pytest.approx(-(math.log(clip0) + math.log(1 - clip1)) / 2, rel=1e-5)


@pytest.mark.parametrize(("losses", "expected"), [((1.0, 1.0, 1.0, 1.0), 2),
                                                   ((1.0, 0.9, 0.7, 0.5), 3)])
def test_fit_keeps_the_best_validation_epoch_ties_going_to_the_lower_loss(
    monkeypatch: pytest.MonkeyPatch, losses: tuple[float, ...], expected: int
) -> None:
    scripted = iter(zip(losses, [0.5, 0.8, 0.8, 0.6], strict=True))  # epochs 1..4: loss, accuracy
    weights_seen = []

    def scripted_evaluate(model: nn.Module, loader: DataLoader, device: torch.device,
                          amp: bool = False) -> tuple[float, float, torch.Tensor]:
        weights_seen.append(copy.deepcopy(model.state_dict()))
        return (*next(scripted), torch.empty(0))

    monkeypatch.setattr(train, "evaluate", scripted_evaluate)
    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(torch.randn(8, 2, 3), torch.randint(0, 2, (8,)),
                                      torch.arange(8)), batch_size=4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    history, best_epoch = fit(model, loader, loader, nn.CrossEntropyLoss(), optimizer, 4,
                              torch.device("cpu"), scheduler=scheduler)
    assert best_epoch == expected  # epochs 2 and 3 tie at 0.8: the lower loss, else the first
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert history["val_acc"].tolist() == [0.5, 0.8, 0.8, 0.6]
    assert history["lr"].tolist() == pytest.approx([0.1, 0.05, 0.025, 0.0125])
    kept = model.state_dict()
    assert all(torch.equal(kept[name], weights_seen[expected - 1][name]) for name in kept)
    assert not torch.equal(kept["1.weight"], weights_seen[3]["1.weight"])


@pytest.mark.slow
def test_a_warm_feature_cache_gives_the_same_run_as_a_cold_one(
    tmp_path: Path, tone_dataset: Path
) -> None:
    # Computing features draws from the global RNG (a DataLoader takes its base seed there), and
    # a warm cache skips that step: the model must be seeded after it, or results would depend
    # on whether the cache was filled before (this course's `make demo` once did).
    manifest = make_splits(build_manifest(tone_dataset, progress=False)[0], "random")
    cold, warm = (run_experiment(manifest, _quick(epochs=1), tmp_path / name, seed=0,
                                 progress=False, tracking_mode="disabled",
                                 cache=tmp_path / "cache", num_workers=0)
                  for name in ("cold", "warm"))
    assert cold.history["train_loss"].tolist() == warm.history["train_loss"].tolist()
    assert cold.metrics["test"] == warm.metrics["test"]


def test_training_accuracy_under_mixup_counts_the_larger_share_of_each_blend() -> None:
    class Fixed(nn.Module):  # always answers class 1
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.tensor([0.0, 5.0]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bias.expand(len(x), 2) + 0 * x.sum()

    def swap_mostly(segments: torch.Tensor, targets: torch.Tensor):  # noqa: ANN202
        """A blend whose larger share is the other class (what mixup does when lam < 0.5)."""
        return segments, 0.3 * nn.functional.one_hot(targets, 2) + 0.7 * nn.functional.one_hot(1 - targets, 2)

    segments, targets = torch.zeros(4, 3), torch.tensor([0, 0, 1, 1])
    loader = DataLoader(TensorDataset(segments, targets, torch.arange(4)), batch_size=4)
    model = Fixed()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    _, plain = train_one_epoch(model, loader, nn.CrossEntropyLoss(), optimizer, torch.device("cpu"))
    _, mixed = train_one_epoch(model, loader, nn.CrossEntropyLoss(), optimizer, torch.device("cpu"),
                               augment=swap_mostly)
    assert plain == 0.5 and mixed == 0.5  # class 1 is right for targets 2, 3 / blends 0, 1
    _, only_zero = train_one_epoch(model, DataLoader(TensorDataset(segments[:2], targets[:2],
                                                                   torch.arange(2)), batch_size=2),
                                   nn.CrossEntropyLoss(), optimizer, torch.device("cpu"),
                                   augment=swap_mostly)
    assert only_zero == 1.0  # both blends are mostly class 1, which the model answers
