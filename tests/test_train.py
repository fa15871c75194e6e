"""Training end to end on small data: it learns, reports on test, and saves what predict needs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import scheduled_rates

from audiocls_utils.config import apply_profile, get_recipe
from audiocls_utils.data import build_manifest, make_splits
from audiocls_utils.predict import Predictor, load_bundle
from audiocls_utils.train import run_experiment


def _quick(recipe_name: str = "baseline", **changes: object):  # noqa: ANN202
    """Return the smoke profile of a recipe, with a rate that learns in a few epochs.

    Batches of 8 give 3 steps per epoch on 27 training clips: with one step per epoch,
    BatchNorm's running statistics barely move in 4 epochs and eval accuracy depends on luck.
    """
    recipe = apply_profile(get_recipe(recipe_name), "smoke")
    return replace(recipe, **{"lr": 1e-3, "epochs": 4, "clips_per_class": None, "batch_size": 8,
                              **changes})


def test_scheduler_follows_the_recipe_and_needs_no_verbose_argument() -> None:
    recipe = replace(get_recipe("advanced"), epochs=30)
    assert scheduled_rates(recipe) == pytest.approx([recipe.lr_factor(e) for e in range(30)])


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
    assert result.metrics["best_epoch"] == int(history["val_acc"].idxmax()) + 1 or (
        history["val_acc"].max() == history.loc[result.metrics["best_epoch"] - 1, "val_acc"])

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
    assert recipe.warmup_epochs >= 1 and recipe.noise_std > 0 and recipe.time_mask > 0
    result = run_experiment(manifest, recipe, tmp_path / "adv", seed=0, progress=False,
                            tracking_mode="disabled")
    assert list(result.history["lr"]) == pytest.approx(
        [recipe.lr * recipe.lr_factor(e) for e in range(3)])
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
    from torch.utils.data import TensorDataset

    from audiocls_utils.train import train_one_epoch

    torch.manual_seed(0)
    features, targets = torch.randn(8, 4, 6), torch.randint(0, 3, (8,))

    class Flat(torch.nn.Module):
        def forward(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
            return x.flatten(1)

    def one_step(batch_size: int, accumulate: int) -> torch.Tensor:
        torch.manual_seed(1)
        model = torch.nn.Linear(24, 3)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        loader = torch.utils.data.DataLoader(
            TensorDataset(features, targets, torch.arange(8)), batch_size=batch_size)
        train_one_epoch(model, loader, Flat(), optimizer, torch.nn.CrossEntropyLoss(),
                        torch.device("cpu"), torch.amp.GradScaler("cpu", enabled=False),
                        progress=False, accumulate=accumulate)
        return model.weight.detach().clone()

    assert torch.allclose(one_step(8, 1), one_step(4, 2), atol=1e-6)
    assert not torch.allclose(one_step(8, 1), one_step(4, 1), atol=1e-4)


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
