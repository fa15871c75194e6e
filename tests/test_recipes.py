"""The course recipe's pieces (cosine schedule, mixup, the recipe end to end); the original
recipe's two versions keep their schedule and features."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import tone, write_wav
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from audiocls_utils.audio import load_audio
from audiocls_utils.augment import Augment
from audiocls_utils.config import (
    ORIGINAL_FEATURES,
    RECIPES,
    FeatureConfig,
    Recipe,
    apply_profile,
    get_recipe,
)
from audiocls_utils.data import build_manifest, make_splits
from audiocls_utils.engine.experiment.runner import run_experiment
from audiocls_utils.errors import AudioclsError
from audiocls_utils.features import LogMel, extract_log_mels
from audiocls_utils.train import make_scheduler, scheduled_rates, train_one_epoch


def test_cosine_schedule_warms_up_then_falls_towards_zero() -> None:
    recipe = Recipe(name="t", epochs=10, warmup_epochs=2, schedule="cosine")
    # Warmup 1/2, 2/2; then 0.5 * (1 + cos(pi * k / 8)) for k = 0..7.
    expected = [0.5, 1.0, 1.0, 0.96194, 0.85355, 0.69134, 0.5, 0.30866, 0.14645, 0.03806]
    assert scheduled_rates(recipe) == pytest.approx(expected, abs=1e-5)
    assert scheduled_rates(recipe, lr=2.0) == pytest.approx([2.0 * f for f in expected], abs=1e-4)


def test_unknown_schedule_is_named() -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    with pytest.raises(AudioclsError, match="'linear'"):
        make_scheduler(optimizer, Recipe(name="t", schedule="linear"))


def test_existing_recipes_keep_their_schedule_and_have_no_mixup() -> None:
    for name in ("original-baseline", "original-advanced", "baseline", "advanced"):
        recipe = RECIPES[name]
        assert recipe.schedule == "step" and recipe.mixup_alpha == 0.0
    rates = scheduled_rates(RECIPES["original-advanced"])
    assert [rates[e] for e in (0, 4, 5, 15, 25)] == pytest.approx([0.2, 1.0, 1.0, 0.1, 0.01])


def test_course_recipe_fits_the_cpu_profile() -> None:
    cpu = apply_profile(get_recipe("course"), "cpu")
    assert (cpu.epochs, cpu.warmup_epochs, cpu.schedule, cpu.segment_seconds) == (10, 2, "cosine", 3.0)
    # Two warmup epochs (2 of 30 scaled to 10 would be 1, no warmup: profiles keep 2), then a
    # cosine over the 8 others: the last is k = 7.
    rates = scheduled_rates(cpu)
    assert rates[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert rates[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))


def test_mixup_blends_each_example_with_its_neighbour_and_the_loss_weighs_both_targets() -> None:
    recipe = Recipe(name="t", mixup_alpha=0.4)  # mixup only: no gain, noise or masks
    mix = Augment(recipe, num_classes=6, fill=0.0, num_frames=4)
    drawn = []

    def recording_augment(segments: torch.Tensor, targets: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        drawn.append((segments.clone(), *mix(segments, targets)))
        return drawn[-1][1:]

    segments, targets = torch.randn(6, 4, 4), torch.arange(6)  # six examples of six classes
    loader = DataLoader(TensorDataset(segments, targets, torch.arange(6)), batch_size=6)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 6))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # leave the model as it is
    loss_fn = nn.CrossEntropyLoss()
    loss, _ = train_one_epoch(model, loader, loss_fn, optimizer, torch.device("cpu"),
                              augment=recording_augment)
    [(original, mixed, labels)] = drawn
    lam = float(labels[0, 0])
    partners = targets.roll(1)  # each example is blended with the one before it
    assert 0.0 < lam < 1.0
    assert torch.allclose(labels, lam * nn.functional.one_hot(targets, 6)
                          + (1 - lam) * nn.functional.one_hot(partners, 6))
    assert torch.allclose(mixed, lam * original + (1 - lam) * original[partners])
    with torch.no_grad():
        logits = model(mixed)
        expected = lam * loss_fn(logits, targets) + (1 - lam) * loss_fn(logits, partners)
    assert loss == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.slow
def test_course_recipe_learns_end_to_end(tmp_path: Path, tone_dataset: Path) -> None:
    manifest = make_splits(build_manifest(tone_dataset, progress=False)[0], "random")
    recipe = replace(apply_profile(get_recipe("course"), "smoke"), epochs=6, clips_per_class=None)
    assert recipe.warmup_epochs == 2 and recipe.schedule == "cosine"
    result = run_experiment(manifest, recipe, tmp_path / "course", seed=0, progress=False,
                            tracking_mode="disabled")
    # Two warmup epochs at 1/2 and 2/2 of the rate, then 0.5 * (1 + cos(pi * k / 4)) for k = 0..3.
    factors = [0.5, 1.0, 1.0, 0.853553, 0.5, 0.146447]
    assert list(result.history["lr"]) == pytest.approx([recipe.lr * f for f in factors], rel=1e-5)
    assert result.metrics["test"]["accuracy"] >= 0.8  # chance is 1/3


def test_raw_power_of_a_loud_clip_is_kept_finite_for_the_original_recipes(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "loud.wav", tone(1000.0, seconds=0.5, amplitude=0.9))
    [power] = extract_log_mels([path], ORIGINAL_FEATURES, progress=False)
    direct = LogMel(ORIGINAL_FEATURES)(load_audio(path, ORIGINAL_FEATURES.sample_rate))
    assert direct.max() > 65504  # float16's largest value: this clip would have become inf
    assert power.dtype == torch.float32 and torch.allclose(power, direct)
    [log_mel] = extract_log_mels([path], FeatureConfig(), progress=False)
    assert log_mel.dtype == torch.float16 and torch.isfinite(log_mel).all()
