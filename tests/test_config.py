"""Recipes and profiles: the original recipe's schedule, JSON round trips, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import stub_gpu

from audiocls_utils.config import (
    ALIASES,
    RECIPES,
    FeatureConfig,
    Recipe,
    apply_profile,
    choose_profile,
    get_recipe,
)
from audiocls_utils.devices import machine_profile, pick_device
from audiocls_utils.errors import AudioclsError
from audiocls_utils.train import scheduled_rates


def test_advanced_schedule_warms_up_for_5_epochs_then_steps_every_10() -> None:
    recipe = get_recipe("original-advanced")
    assert recipe.epochs == 30
    factors = scheduled_rates(recipe)  # rates of a base rate of 1: the factors
    assert factors[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert factors[5:15] == pytest.approx([1.0] * 10)
    assert factors[15:25] == pytest.approx([0.1] * 10)
    assert factors[25:] == pytest.approx([0.01] * 5)


def test_baseline_rate_is_constant() -> None:
    recipe = get_recipe("baseline")
    assert scheduled_rates(recipe, lr=recipe.lr) == pytest.approx([1e-4] * 20)


def test_original_recipes_keep_the_original_settings() -> None:
    baseline, advanced = RECIPES["original-baseline"], RECIPES["original-advanced"]
    assert (baseline.model, baseline.image_size, baseline.batch_size, baseline.epochs,
            baseline.lr) == ("resnet18", 224, 16, 20, 1e-4)
    assert (advanced.model, advanced.image_size, advanced.epochs) == ("resnext101_32x8d", 512, 30)
    assert not baseline.feature.to_db  # the original recipe's missing dB scaling, kept on purpose
    assert RECIPES["baseline"].feature.to_db and RECIPES["baseline"].normalize


def test_the_old_recipe_names_still_work() -> None:
    # `audiocls train --recipe seed-baseline` worked before the recipes were renamed.
    assert get_recipe("seed-baseline") == get_recipe("original-baseline")
    assert get_recipe("seed-advanced") == get_recipe("original-advanced")
    assert get_recipe("seed-baseline").name == "original-baseline"
    assert set(ALIASES.values()) <= set(RECIPES)
    assert not set(ALIASES) & set(RECIPES)  # an alias never hides a recipe


def test_recipe_round_trips_through_json() -> None:
    recipe = apply_profile(get_recipe("advanced"), "cpu")
    assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe


def test_unknown_settings_and_names_are_named_in_the_error() -> None:
    with pytest.raises(AudioclsError, match="n_melz"):
        FeatureConfig.from_dict({"n_melz": 64})
    with pytest.raises(AudioclsError, match="baseline"):
        get_recipe("basline")
    with pytest.raises(AudioclsError, match="smoke"):
        apply_profile(get_recipe("baseline"), "tiny")


def test_profiles_shrink_but_full_is_the_recipe_as_written() -> None:
    advanced = get_recipe("advanced")
    assert apply_profile(advanced, "full") == advanced
    cpu, smoke = apply_profile(advanced, "cpu"), apply_profile(advanced, "smoke")
    assert cpu.image_size < advanced.image_size and cpu.epochs < advanced.epochs
    assert 2 <= cpu.warmup_epochs < cpu.epochs and cpu.step_size >= 1
    assert smoke.epochs <= cpu.epochs and smoke.clips_per_class is not None
    assert cpu.model == smoke.model == "resnet18"  # grouped convolutions crawl on CPUs
    assert choose_profile("cuda:0")[0] == "full" and choose_profile("cpu")[0] == "cpu"


def test_gpu16_keeps_model_images_and_schedule_and_the_effective_batch() -> None:
    for name in ("original-advanced", "course"):
        recipe = get_recipe(name)
        small = apply_profile(recipe, "gpu16")
        assert small.batch_size <= 8
        assert small.batch_size * small.accumulate >= recipe.batch_size * recipe.accumulate
        assert (small.model, small.image_size, small.epochs, small.warmup_epochs, small.lr) == (
            recipe.model, recipe.image_size, recipe.epochs, recipe.warmup_epochs, recipe.lr)


@pytest.mark.parametrize(("gpu", "total_gib", "major", "expected"), [
    ("Tesla T4", 14.6, 7, "gpu16"),            # free Colab: 16 GB, no native bf16
    ("Tesla V100-SXM2-16GB", 15.8, 7, "gpu16"),
    ("Tesla V100-SXM2-32GB", 31.7, 7, "full"),
    ("NVIDIA L4", 22.0, 8, "full"),            # 24 GB with bf16 autocast
    ("NVIDIA GeForce RTX 3060", 11.7, 8, "gpu16"),
    ("NVIDIA GeForce GTX 1080", 7.9, 6, "cpu"),
    ("NVIDIA A100-SXM4-80GB", 79.2, 8, "full"),
])
def test_profile_follows_the_gpu_memory(monkeypatch: pytest.MonkeyPatch, gpu: str,
                                        total_gib: float, major: int, expected: str) -> None:
    stub_gpu(monkeypatch, gpu, total_gib, major)
    profile, why = machine_profile(torch.device("cuda"))
    assert profile == expected
    assert f"{gpu} has {total_gib:.1f} GiB" in why


def test_profile_without_a_gpu_is_cpu() -> None:
    assert machine_profile(torch.device("cpu"))[0] == "cpu"
    assert machine_profile(torch.device("mps"))[0] == "cpu"


@pytest.mark.parametrize(("requested", "message"), [
    ("banana", "device 'banana' is not a device: use cpu, cuda, cuda:N or mps"),
    ("cuda", "asks for a CUDA GPU but PyTorch sees none"),
    ("cuda:1", "asks for a CUDA GPU but PyTorch sees none"),
])
def test_a_device_that_cannot_be_used_is_one_line(requested: str, message: str) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(AudioclsError, match=message):
        pick_device(requested)


def test_a_gpu_index_past_the_last_gpu_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    stub_gpu(monkeypatch, "Tesla T4", 14.6, 7, count=2)
    assert pick_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(AudioclsError, match="has 2 GPUs, cuda:0 to cuda:1"):
        pick_device("cuda:2")


def test_feature_key_changes_with_any_setting() -> None:
    assert FeatureConfig().key() == FeatureConfig().key()
    assert FeatureConfig().key() != FeatureConfig(n_mels=64).key()


def test_frame_count_matches_a_centered_stft() -> None:
    config = FeatureConfig(hop_length=512)
    assert config.num_frames(22050 * 30) == 1292
    assert config.seconds_to_frames(1.0) == 44


@pytest.mark.parametrize("profile", ["cpu", "smoke"])
@pytest.mark.parametrize("name", ["advanced", "course"])
def test_a_shrunk_warmup_still_ramps(name: str, profile: str) -> None:
    # Scaled by epochs alone, the course recipe's 2 warmup epochs of 30 become 1 in `cpu`, and a
    # 1-epoch LinearLR starts at the full rate: no warmup. The profiles keep 2, half then all.
    recipe = apply_profile(get_recipe(name), profile)
    assert recipe.warmup_epochs == 2
    assert scheduled_rates(recipe)[:2] == pytest.approx([0.5, 1.0])
