"""The course recipe's pieces (cosine schedule, mixup, the recipe end to end); seed recipes train."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import scheduled_rates, tone, write_wav
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from audiocls_utils import train
from audiocls_utils.audio import load_audio
from audiocls_utils.augment import InputPipeline, mixup
from audiocls_utils.config import RECIPES, SEED_FEATURES, FeatureConfig, Recipe, apply_profile, get_recipe
from audiocls_utils.data import build_manifest, make_splits
from audiocls_utils.errors import AudioclsError
from audiocls_utils.features import LogMel, extract_log_mels
from audiocls_utils.train import run_experiment, train_one_epoch


def test_cosine_schedule_warms_up_then_falls_towards_zero() -> None:
    recipe = Recipe(name="t", epochs=10, warmup_epochs=2, schedule="cosine")
    factors = [recipe.lr_factor(epoch) for epoch in range(10)]
    # Warmup 1/2, 2/2; then 0.5 * (1 + cos(pi * k / 8)) for k = 0..7.
    expected = [0.5, 1.0, 1.0, 0.96194, 0.85355, 0.69134, 0.5, 0.30866, 0.14645, 0.03806]
    assert factors == pytest.approx(expected, abs=1e-5)
    assert scheduled_rates(recipe, lr=2.0) == pytest.approx([2.0 * f for f in expected], abs=1e-4)


def test_unknown_schedule_is_named() -> None:
    with pytest.raises(AudioclsError, match="'linear'"):
        Recipe(name="t", schedule="linear").lr_factor(3)


def test_existing_recipes_keep_their_schedule_and_have_no_mixup() -> None:
    for name in ("seed-baseline", "seed-advanced", "baseline", "advanced"):
        recipe = RECIPES[name]
        assert recipe.schedule == "step" and recipe.mixup_alpha == 0.0
    assert [RECIPES["seed-advanced"].lr_factor(e) for e in (0, 4, 5, 15, 25)] == pytest.approx(
        [0.2, 1.0, 1.0, 0.1, 0.01])


def test_course_recipe_fits_the_cpu_profile() -> None:
    cpu = apply_profile(get_recipe("course"), "cpu")
    assert (cpu.epochs, cpu.warmup_epochs, cpu.schedule, cpu.segment_seconds) == (10, 1, "cosine", 3.0)
    assert cpu.lr_factor(cpu.epochs - 1) == pytest.approx(0.5 * (1 + math.cos(math.pi * 8 / 9)))


def test_mixup_blends_each_example_with_its_partner() -> None:
    torch.manual_seed(0)
    inputs, targets = torch.randn(8, 3, 4, 4), torch.arange(8)
    mixed, partners, lam = mixup(inputs, targets, alpha=0.4)
    assert 0.0 < lam < 1.0 and sorted(partners.tolist()) == list(range(8))
    assert torch.allclose(mixed, lam * inputs + (1 - lam) * inputs[partners])  # targets = rows
    same, same_targets, one = mixup(inputs, targets, alpha=0.0)
    assert same is inputs and torch.equal(same_targets, targets) and one == 1.0


def test_training_loss_with_mixup_weighs_both_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = []

    def recording_mixup(*args: object) -> tuple[torch.Tensor, torch.Tensor, float]:
        drawn.append(mixup(*args))
        return drawn[-1]

    monkeypatch.setattr(train, "mixup", recording_mixup)
    recipe = Recipe(name="t", image_size=4, normalize=False)
    features, targets = torch.randn(6, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    loader = DataLoader(TensorDataset(features, targets, torch.arange(6)), batch_size=6)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # leave the model as it is
    loss_fn = nn.CrossEntropyLoss()
    loss, _ = train_one_epoch(model, loader, InputPipeline(recipe, num_frames=4), optimizer,
                              loss_fn, torch.device("cpu"), torch.amp.GradScaler("cpu", enabled=False),
                              progress=False, mixup_alpha=0.4)
    [(mixed, partners, lam)] = drawn
    with torch.no_grad():
        logits = model(mixed)
        expected = lam * loss_fn(logits, targets) + (1 - lam) * loss_fn(logits, partners)
    assert 0.0 < lam < 1.0 and loss == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.slow
def test_course_recipe_learns_end_to_end(tmp_path: Path, tone_dataset: Path) -> None:
    manifest = make_splits(build_manifest(tone_dataset, progress=False)[0], "random")
    recipe = replace(apply_profile(get_recipe("course"), "smoke"), epochs=6, clips_per_class=None)
    result = run_experiment(manifest, recipe, tmp_path / "course", seed=0, progress=False,
                            tracking_mode="disabled")
    assert list(result.history["lr"]) == pytest.approx(
        [recipe.lr * recipe.lr_factor(e) for e in range(6)])
    assert result.metrics["test"]["accuracy"] >= 0.8  # chance is 1/3


def test_raw_power_of_a_loud_clip_is_kept_finite_for_the_seed_recipes(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "loud.wav", tone(1000.0, seconds=0.5, amplitude=0.9))
    [power] = extract_log_mels([path], SEED_FEATURES, progress=False)
    direct = LogMel(SEED_FEATURES)(load_audio(path, SEED_FEATURES.sample_rate))
    assert direct.max() > 65504  # float16's largest value: this clip would have become inf
    assert power.dtype == torch.float32 and torch.allclose(power, direct)
    [log_mel] = extract_log_mels([path], FeatureConfig(), progress=False)
    assert log_mel.dtype == torch.float16 and torch.isfinite(log_mel).all()
