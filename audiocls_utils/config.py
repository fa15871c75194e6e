"""Settings as small frozen dataclasses: features, recipes and profiles."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from .errors import AudioclsError

PROFILES = ("smoke", "cpu", "gpu16", "full")
SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class FeatureConfig:
    """Describe how a waveform becomes a log-Mel spectrogram."""

    sample_rate: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float | None = None
    to_db: bool = True  # the original recipe fed raw power to the CNN; dB is what the ear and the CNN need
    top_db: float | None = 80.0

    def num_frames(self, num_samples: int) -> int:
        """Return the number of STFT frames for a waveform of `num_samples` (center=True)."""
        return 1 + num_samples // self.hop_length

    def seconds_to_frames(self, seconds: float) -> int:
        """Return the number of frames that cover `seconds` of audio."""
        return self.num_frames(round(seconds * self.sample_rate))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        """Build a config from `to_dict` output, rejecting unknown keys."""
        return _from_dict(cls, data)

    def key(self) -> str:
        """Return a short stable hash: equal configs give equal keys (used by caches)."""
        return _config_key(self)


@lru_cache(maxsize=64)
def _config_key(config: FeatureConfig) -> str:
    """Hash a feature config once (the cache asks for its key for every clip)."""
    text = json.dumps(config.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Recipe:
    """Describe one way to train: model, input size, schedule and augmentation."""

    name: str
    model: str = "resnet18"
    pretrained: str = "auto"  # "auto" | "yes" | "no"
    image_size: int = 224
    segment_seconds: float = 30.0  # crop of each clip fed to the model
    batch_size: int = 16
    accumulate: int = 1  # gradient accumulation: optimizer steps every `accumulate` batches
    epochs: int = 20
    optimizer: str = "adam"  # "adam" | "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_epochs: int = 0
    schedule: str = "step"  # after warmup: "step" (StepLR) or "cosine" (CosineAnnealingLR, down to 0)
    step_size: int = 0  # StepLR period in epochs after warmup; 0 keeps the rate constant
    gamma: float = 0.1
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0  # mixup's Beta(alpha, alpha) weight; 0 turns mixup off
    time_mask: int = 0  # widest time mask, in frames
    freq_mask: int = 0  # widest frequency mask, in Mel bins
    noise_std: float = 0.0  # Gaussian noise, as a waveform standard deviation
    gain_db: float = 0.0  # random gain drawn from [-gain_db, +gain_db]
    normalize: bool = True  # standardize with the training set's mean and std
    eval_hop_fraction: float = 0.5  # evaluation windows overlap by 1 - this fraction
    clips_per_class: int | None = None  # cap per class and split (profiles use it)
    feature: FeatureConfig = field(default_factory=FeatureConfig)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """Build a recipe from `to_dict` output."""
        data = dict(data)
        data["feature"] = FeatureConfig.from_dict(data.get("feature", {}))
        return _from_dict(cls, data)


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build dataclass `cls` from `data`, naming any unknown key."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise AudioclsError(f"Unknown {cls.__name__} setting(s) {unknown}; known: {sorted(names)}")
    return cls(**data)


# The original recipe (SwanLab's GTZAN tutorial, as its documentation publishes it): Mel power, no
# dB, no standardization. (Its hop of 640 samples is 512 here, as everywhere in the course.)
ORIGINAL_FEATURES = FeatureConfig(to_db=False, top_db=None)

RECIPES: dict[str, Recipe] = {
    # The original recipe's baseline: ResNet18 (ImageNet), Adam 1e-4, batch 16, 20 epochs, 224 px.
    "original-baseline": Recipe(name="original-baseline", feature=ORIGINAL_FEATURES,
                                normalize=False),
    # The original recipe's advanced version: ResNeXt101 at 512 px, 5 warmup epochs, StepLR(10, 0.1),
    # masks of up to 20 frames and 20 Mel bands, and gain and noise. Its gain multiplies the Mel
    # power by 0.8-1.2 (about +-1 dB); its noise, N(0, 0.01) added to the Mel power, is negligible
    # next to music's power, so waveform noise of std up to 0.005 stands in for it here.
    "original-advanced": Recipe(
        name="original-advanced",
        model="resnext101_32x8d",
        image_size=512,
        epochs=30,
        warmup_epochs=5,
        step_size=10,
        gamma=0.1,
        time_mask=20,
        freq_mask=20,
        noise_std=0.005,
        gain_db=1.0,
        feature=ORIGINAL_FEATURES,
        normalize=False,
    ),
}
# The course's versions of the same two recipes: log-Mel in dB, standardized.
RECIPES["baseline"] = replace(
    RECIPES["original-baseline"], name="baseline", feature=FeatureConfig(), normalize=True
)
RECIPES["advanced"] = replace(
    RECIPES["original-advanced"], name="advanced", feature=FeatureConfig(), normalize=True
)
# The course's own recipe (docs/results.md has its measurements): random 5 s crops of each clip
# (every window votes at test time), AdamW with warmup and a cosine decay, label smoothing,
# mixup, SpecAugment masks and random gain. ResNet18 keeps it cheap enough for one GPU hour.
RECIPES["course"] = Recipe(
    name="course",
    segment_seconds=5.0,
    batch_size=32,
    epochs=30,
    optimizer="adamw",
    lr=1e-3,
    weight_decay=0.05,
    warmup_epochs=2,
    schedule="cosine",
    label_smoothing=0.1,
    mixup_alpha=0.2,
    time_mask=20,
    freq_mask=16,
    gain_db=6.0,
)


# Earlier names of the original recipe's two versions, still accepted (`--recipe seed-baseline`).
ALIASES = {"seed-baseline": "original-baseline", "seed-advanced": "original-advanced"}


def get_recipe(name: str) -> Recipe:
    """Return the named recipe (or an alias's), or raise naming the ones that exist."""
    try:
        return RECIPES[ALIASES.get(name, name)]
    except KeyError:
        raise AudioclsError(f"Unknown recipe {name!r}; choose one of {sorted(RECIPES)}") from None


# GPU memory (GiB, as PyTorch reports a card's total) the `full` profile needs. Its largest recipe,
# ResNeXt101 at 512 px with batches of 16, takes about 20.8 GiB of activations in float32
# (chapter 04's estimate) plus 1.3 GiB of weights, gradients and Adam state; bf16 autocast, on GPUs
# that run it natively (Ampere and newer), halves the activations. `gpu16` trains batches of 8
# (accumulating gradients to the recipe's batch), half of that.
FULL_GIB = {"float32": 30.0, "bf16": 20.0}
GPU16_GIB = {"float32": 14.0, "bf16": 10.0}
GPU16_BATCH = 8


def choose_profile(device: str, memory_gib: float | None = None, native_bf16: bool = False,
                   gpu_name: str = "the GPU") -> tuple[str, str]:
    """Return the profile for a device and the reason, from its type and (CUDA) memory in GiB.

    `full` only where the GPU holds the original recipe's largest run, `gpu16` where it holds half
    a batch (a 16 GB card such as a free Colab T4), else `cpu`: small images, on any device.
    """
    kind = str(device).split(":")[0]
    if kind != "cuda":
        why = "Apple's GPU shares the laptop's memory" if kind == "mps" else "no GPU"
        return "cpu", f"{why}: ResNet18 at 96 px for 10 epochs"
    if memory_gib is None:
        return "full", "CUDA GPU of unknown memory: the recipes as written"
    precision = "bf16" if native_bf16 else "float32"
    has = f"{gpu_name} has {memory_gib:.1f} GiB" + (", bf16" if native_bf16 else ", no native bf16")
    if memory_gib >= FULL_GIB[precision]:
        return "full", f"{has}: the recipes as written"
    if memory_gib >= GPU16_GIB[precision]:
        return "gpu16", (f"{has}, under the {FULL_GIB[precision]:g} GiB the full 512 px recipe needs: "
                         f"batches of {GPU16_BATCH}, gradients accumulated to the recipe's batch")
    return "cpu", f"{has}, under the {GPU16_GIB[precision]:g} GiB of gpu16: the cpu profile's sizes"


def apply_profile(recipe: Recipe, profile: str) -> Recipe:
    """Scale a recipe to a profile: `full` as written, `gpu16` for a 16 GB GPU, `cpu` minutes on 2 cores,
    `smoke` seconds."""
    if profile not in PROFILES:
        raise AudioclsError(f"Unknown profile {profile!r}; choose one of {list(PROFILES)}")
    if profile == "full":
        return recipe
    if profile == "gpu16":  # same model, images and schedule; smaller batches, same effective batch
        batch_size = min(recipe.batch_size, GPU16_BATCH)
        return replace(recipe, name=f"{recipe.name}@gpu16", batch_size=batch_size,
                       accumulate=recipe.accumulate * math.ceil(recipe.batch_size / batch_size))
    if profile == "cpu":
        # resnet18 for every recipe: grouped convolutions are slow on CPUs (resnext50_32x4d took
        # 2.1x resnet18's time per training step at 64 px, 2.5x at 96 px, on 2 cores).
        return _shrink(recipe, model="resnet18", image_size=96, epochs=10, segment_seconds=3.0,
                       batch_size=16, clips_per_class=None, name_suffix="cpu")
    return _shrink(recipe, model="resnet18", image_size=64, epochs=2, segment_seconds=1.0,
                   batch_size=16, clips_per_class=8, name_suffix="smoke")


def _shrink(recipe: Recipe, *, model: str, image_size: int, epochs: int, segment_seconds: float,
            batch_size: int, clips_per_class: int | None, name_suffix: str) -> Recipe:
    """Return a smaller copy of `recipe` with its schedule scaled to the new epoch count
    (a warmup never shorter than 2 epochs, the shortest that ramps)."""
    epochs = min(epochs, recipe.epochs)
    ratio = epochs / recipe.epochs
    return replace(
        recipe,
        name=f"{recipe.name}@{name_suffix}",
        model=model,
        image_size=min(image_size, recipe.image_size),
        epochs=epochs,
        segment_seconds=min(segment_seconds, recipe.segment_seconds),
        batch_size=batch_size,
        # A warmup of 1 epoch is none (LinearLR reaches the full rate at once): keep at least 2.
        warmup_epochs=min(epochs, max(2, math.ceil(recipe.warmup_epochs * ratio)))
        if recipe.warmup_epochs else 0,
        step_size=max(1, round(recipe.step_size * ratio)) if recipe.step_size else 0,
        clips_per_class=clips_per_class,
    )
