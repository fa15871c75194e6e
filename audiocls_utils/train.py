"""Train and evaluate: the loop, clip-level evaluation, checkpoints and the whole experiment."""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .augment import InputPipeline, mixup
from .cache import FeatureCache
from .config import FeatureConfig, Recipe
from .data import (
    SegmentDataset,
    SegmentSampler,
    check_splits,
    class_names,
    collate_segments,
    limit_per_class,
    save_manifest,
)
from .distributed import (
    Ranks,
    all_reduce,
    broadcast_buffers,
    check_ranks_agree,
    quiet_unless_main,
    start_distributed,
)
from .errors import AudioclsError
from .features import LogMelSource, extract_log_mels, feature_moments, stats_from_moments
from .files import load_torch, save_torch, write_csv, write_json
from .metrics import classification_metrics
from .models import create_model
from .plots import plot_confusion_matrix
from .tracking import Tracker

MODEL_FORMAT = "audiocls-model/1"


def pick_device(requested: str | None = None) -> torch.device:
    """Return the requested device, else CUDA, then Apple's MPS, then the CPU."""
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) random number generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_workers() -> int:
    """Return DataLoader workers that serve segments: none on 2 cores, up to 4 on bigger machines."""
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(4, cores - 1)


def loader_settings(device: torch.device, num_workers: int, pin_memory: bool | None = None
                    ) -> dict[str, Any]:
    """Return DataLoader settings for this machine: workers, pinned memory on CUDA, persistent workers."""
    return {
        "num_workers": num_workers,
        "pin_memory": device.type == "cuda" if pin_memory is None else pin_memory,
        "persistent_workers": num_workers > 0,  # no new worker processes every epoch
    }


@dataclass
class Features:
    """Log-Mel features of every clip of one split, with their targets."""

    log_mels: list[LogMelSource]  # tensors in RAM, or cache entries read from disk on demand
    targets: list[int]
    paths: list[str] = field(default_factory=list)


def resolve_cache(cache: FeatureCache | str | Path | bool | None) -> FeatureCache | None:
    """Return the feature cache `cache` asks for: True the default one, a folder, or None (off)."""
    if cache is None or cache is False:
        return None
    if cache is True:
        return FeatureCache()
    return cache if isinstance(cache, FeatureCache) else FeatureCache(cache)


def compute_split_features(
    manifest: pd.DataFrame,
    classes: Sequence[str],
    config: FeatureConfig,
    device: torch.device,
    progress: bool = True,
    num_workers: int | None = None,
    cache: FeatureCache | None = None,
    ranks: Ranks | None = None,
) -> dict[str, Features]:
    """Compute each clip's log-Mel once (batched, on `device`) and group them by split.

    `num_workers`: decoding processes (default: `features.extraction_workers`).

    With a cache, clips seen before are read from disk and only the others are computed (each
    rank computing its share first under DDP); without one, every log-Mel is kept in RAM.
    """
    ranks = ranks or Ranks()
    index = {name: i for i, name in enumerate(classes)}
    paths = manifest["path"].tolist()
    if cache is None:
        log_mels: list[LogMelSource] = list(
            extract_log_mels(paths, config, device, num_workers=num_workers, progress=progress))
    else:
        if ranks.world_size > 1:
            cache.log_mels(paths[ranks.rank :: ranks.world_size], config, device,
                           num_workers=num_workers, progress=progress)
            dist.barrier()
        log_mels = list(cache.log_mels(paths, config, device, num_workers=num_workers,
                                       progress=progress))
    splits = {}
    for split, rows in manifest.groupby("split"):
        positions = [manifest.index.get_loc(i) for i in rows.index]
        splits[str(split)] = Features(
            log_mels=[log_mels[p] for p in positions],
            targets=[index[label] for label in rows["label"]],
            paths=[paths[p] for p in positions],
        )
    return splits


def _autocast(device: torch.device, enabled: bool = True) -> Any:
    """Return an autocast context: bf16/fp16 on CUDA (when enabled), a no-op elsewhere."""
    if device.type != "cuda" or not enabled:
        return torch.autocast(device_type=device.type if device.type == "cuda" else "cpu",
                              enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    pipeline: InputPipeline,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    device: torch.device,
    scaler: torch.amp.GradScaler,
    progress: bool = True,
    description: str = "train",
    amp: bool = True,
    accumulate: int = 1,
    mixup_alpha: float = 0.0,
) -> tuple[float, float]:
    """Train one pass over `loader`; return the mean loss and accuracy over its segments
    (with mixup, both weighted by each target's share of the blend).

    With `accumulate` > 1 gradients of that many batches add up before each optimizer step:
    the step of a batch `accumulate` times larger, in the memory of one batch.
    Under DDP the figures cover the segments of all ranks.
    """
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    optimizer.zero_grad(set_to_none=True)
    last = len(loader) - 1
    for index, (features, targets, _) in enumerate(tqdm(loader, desc=description, unit="batch",
                                                        leave=False, disable=not progress)):
        features = features.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        inputs, partners, lam = mixup(pipeline(features, train=True), targets, mixup_alpha)
        with _autocast(device, amp):
            logits = model(inputs)
            loss = loss_fn(logits, targets)  # mean over the batch: lr means the same at any size
            if lam < 1.0:
                loss = lam * loss + (1.0 - lam) * loss_fn(logits, partners)
        if not torch.isfinite(loss):
            raise AudioclsError(f"Training loss became {loss.item()}: lower the learning rate or "
                                "check the inputs for NaN")
        scaler.scale(loss / accumulate).backward()  # the mean over the accumulated batches
        if (index + 1) % accumulate == 0 or index == last:
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        total_loss += loss.item() * len(targets)
        predictions = logits.argmax(1)
        correct += lam * int((predictions == targets).sum()) + (1.0 - lam) * int(
            (predictions == partners).sum())
        seen += len(targets)
    total_loss, correct, seen = all_reduce(
        torch.tensor([total_loss, correct, seen], dtype=torch.float64)).tolist()
    return total_loss / seen, correct / seen


@torch.inference_mode()
def predict_clips(
    model: nn.Module,
    dataset: SegmentDataset,
    pipeline: InputPipeline,
    device: torch.device,
    batch_size: int = 32,
    progress: bool = False,
    amp: bool = True,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> torch.Tensor:
    """Return clip-level probabilities (clips, classes): the mean softmax over each clip's windows."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=pin_memory, collate_fn=collate_segments)
    sums: torch.Tensor | None = None
    counts = torch.zeros(len(dataset.log_mels))
    for features, _, clips in tqdm(loader, desc="evaluate", unit="batch", leave=False,
                                   disable=not progress):
        with _autocast(device, amp):
            logits = model(pipeline(features.to(device, non_blocking=True), train=False))
        probabilities = logits.float().softmax(dim=1).cpu()
        if sums is None:
            sums = torch.zeros(len(dataset.log_mels), probabilities.shape[1])
        sums.index_add_(0, clips, probabilities)
        counts.index_add_(0, clips, torch.ones(len(clips)))
    assert sums is not None and (counts > 0).all(), "every clip needs at least one window"
    return sums / counts.unsqueeze(1)


def evaluate_clips(
    model: nn.Module,
    features: Features,
    pipeline: InputPipeline,
    recipe: Recipe,
    num_frames: int,
    device: torch.device,
    classes: Sequence[str],
    ranks: Ranks | None = None,
    amp: bool = True,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> tuple[float, dict[str, Any]]:
    """Score whole clips (windows averaged); return the clip NLL loss and the metrics.

    Under DDP each rank scores every world_size-th clip and the probabilities are summed, so
    every rank gets the same metrics.
    """
    ranks = ranks or Ranks()
    hop = max(1, int(num_frames * recipe.eval_hop_fraction))
    share = range(ranks.rank, len(features.targets), ranks.world_size)
    probabilities = torch.zeros(len(features.targets), len(classes))
    if share:
        dataset = SegmentDataset([features.log_mels[i] for i in share],
                                 [features.targets[i] for i in share], num_frames, train=False,
                                 hop_frames=hop)
        probabilities[ranks.rank :: ranks.world_size] = predict_clips(
            model, dataset, pipeline, device, batch_size=recipe.batch_size, amp=amp,
            num_workers=num_workers, pin_memory=pin_memory)
    probabilities = all_reduce(probabilities)
    targets = torch.tensor(features.targets)
    loss = float(nn.functional.nll_loss(probabilities.clamp_min(1e-8).log(), targets))
    metrics = classification_metrics(targets.tolist(), probabilities.argmax(1).tolist(), classes)
    return loss, metrics


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """Build Adam or AdamW with the recipe's learning rate and weight decay."""
    optimizers = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if recipe.optimizer not in optimizers:
        raise AudioclsError(f"Unknown optimizer {recipe.optimizer!r}; choose {sorted(optimizers)}")
    return optimizers[recipe.optimizer](model.parameters(), lr=recipe.lr,
                                        weight_decay=recipe.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    """Build the seed's schedule: linear warmup, then StepLR-style decay (stepped per epoch).

    The seed passed `verbose=` to StepLR, which recent PyTorch removed; one LambdaLR gives the
    same rates and resumes from a checkpoint like any scheduler.
    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, recipe.lr_factor)


@dataclass
class TrainResult:
    """What `run_experiment` returns: metrics, history and where the files went."""

    metrics: dict[str, Any]
    history: pd.DataFrame
    output_dir: Path
    model: nn.Module
    recipe: Recipe


def model_bundle(model: nn.Module, recipe: Recipe, classes: Sequence[str], num_frames: int,
                 mean: float, std: float) -> dict[str, Any]:
    """Return everything `predict` needs, as tensors and plain Python types (weights_only-safe)."""
    return {
        "format": MODEL_FORMAT,
        "model_name": recipe.model,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "class_names": list(classes),
        "feature_config": recipe.feature.to_dict(),
        "recipe": recipe.to_dict(),
        "num_frames": int(num_frames),
        "mean": float(mean),
        "std": float(std),
    }


def run_experiment(
    manifest: pd.DataFrame,
    recipe: Recipe,
    output_dir: str | Path,
    device: str | torch.device | None = None,
    seed: int = 42,
    tracking_mode: str | None = None,
    progress: bool = True,
    num_workers: int | None = None,
    resume: bool = False,
    cache: FeatureCache | str | Path | bool = True,
    amp: bool = True,
    channels_last: bool | None = None,
    pin_memory: bool | None = None,
) -> TrainResult:
    """Train `recipe` on the manifest's train split, select on val, report on test.

    Writes to `output_dir`: metrics.json, history.csv, model.pt, manifest.csv, recipe.json and
    checkpoints/{best,last}.pt, each written atomically.

    Speed switches, all on by default: `cache` (True: the default `FeatureCache`; a folder or a
    FeatureCache; False keeps every log-Mel in RAM instead), `num_workers` (DataLoader
    processes; default by CPU count and task: `features.extraction_workers` to compute
    features, `default_workers` to serve segments), `amp` (bf16/fp16 autocast on CUDA), `channels_last` and
    `pin_memory` (None: on with CUDA).

    Under `torchrun --nproc_per_node=N` it trains with DistributedDataParallel: each rank trains
    on its share of the clips, metrics cover all ranks, and only rank 0 prints, tracks and
    writes files (the ranks must share the output folder's disk, as on one machine).
    """
    ranks, device, started_group = start_distributed(
        pick_device(str(device) if device else None))
    try:
        with quiet_unless_main():
            return _run_experiment(manifest, recipe, Path(output_dir), device, seed, tracking_mode,
                                   progress and ranks.is_main, num_workers,
                                   resume, resolve_cache(cache), amp,
                                   device.type == "cuda" if channels_last is None else channels_last,
                                   pin_memory, ranks)
    finally:
        if started_group:
            dist.destroy_process_group()


def _seed_rank(seed: int, rank: int, epoch: int) -> None:
    """Give ranks other than 0 their own augmentation draws (rank 0 keeps the single-process ones)."""
    if rank:
        torch.manual_seed(int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0]))


def _run_experiment(
    manifest: pd.DataFrame,
    recipe: Recipe,
    output_dir: Path,
    device: torch.device,
    seed: int,
    tracking_mode: str | None,
    progress: bool,
    num_workers: int | None,
    resume: bool,
    cache: FeatureCache | None,
    amp: bool,
    channels_last: bool,
    pin_memory: bool | None,
    ranks: Ranks,
) -> TrainResult:
    """Run `run_experiment` once the device, ranks and switches are settled."""
    if ranks.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    manifest = limit_per_class(manifest, recipe.clips_per_class, seed=seed)
    for warning in check_splits(manifest):
        print(f"Warning: {warning}")
    classes = class_names(manifest)
    if ranks.is_main:
        save_manifest(manifest, output_dir / "manifest.csv")
        write_json(output_dir / "recipe.json", recipe.to_dict())

    # No longer than a typical long clip: 30 s segments of 5 s clips would be mostly padding.
    segment_seconds = min(recipe.segment_seconds, float(manifest["duration"].quantile(0.95)))
    num_frames = recipe.feature.seconds_to_frames(segment_seconds)
    print(f"Recipe {recipe.name}: {recipe.model} at {recipe.image_size} px, {recipe.epochs} "
          f"epochs, segments of {segment_seconds:.2f} s ({num_frames} frames), device {device}"
          + (f" x {ranks.world_size} ranks" if ranks.world_size > 1 else ""))
    if cache is not None:
        print(f"Feature cache: {cache.root}")

    splits = compute_split_features(manifest, classes, recipe.feature, device, progress,
                                    num_workers, cache, ranks)
    train = splits["train"]
    mean, std = 0.0, 1.0
    if recipe.normalize:  # each rank reads its share of the clips; the sums add up
        moments = feature_moments(train.log_mels[ranks.rank :: ranks.world_size])
        mean, std = stats_from_moments(all_reduce(moments))
    pipeline = InputPipeline(recipe, num_frames, mean, std, channels_last).to(device)

    # Seed again: computing features draws from the global RNG (a DataLoader takes its base seed
    # there) and a warm cache skips that, so the model would otherwise start elsewhere.
    seed_everything(seed)
    model = create_model(recipe.model, len(classes), recipe.pretrained).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, recipe)
    scheduler = make_scheduler(optimizer, recipe)
    scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    loader_kwargs = loader_settings(device, default_workers() if num_workers is None
                                    else num_workers, pin_memory)
    eval_kwargs = {"ranks": ranks, "amp": amp, "num_workers": loader_kwargs["num_workers"],
                   "pin_memory": loader_kwargs["pin_memory"]}
    sampler = SegmentSampler(len(train.targets), seed, ranks.rank, ranks.world_size)
    train_loader = DataLoader(
        SegmentDataset(train.log_mels, train.targets, num_frames, train=True),
        batch_size=recipe.batch_size, sampler=sampler, collate_fn=collate_segments,
        drop_last=len(sampler) > recipe.batch_size, **loader_kwargs,
    )

    checkpoints = output_dir / "checkpoints"
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": -1, "val_acc": -1.0, "val_loss": math.inf}
    start_epoch = 0
    run_id = None
    if resume and (checkpoints / "last.pt").exists():
        state = load_torch(checkpoints / "last.pt")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        history, best, run_id = state["history"], state["best"], state.get("run_id")
        start_epoch = state["epoch"] + 1
        print(f"Resuming from {checkpoints / 'last.pt'} after epoch {start_epoch}")
    elif resume:
        print(f"No checkpoint in {checkpoints}; starting from scratch")
    _seed_rank(seed, ranks.rank, start_epoch)
    net: nn.Module = model
    if ranks.world_size > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                      else None)

    tracker = Tracker(experiment=output_dir.name, mode=tracking_mode if ranks.is_main else
                      "disabled", log_dir=output_dir.parent / "swanlog",
                      config={**recipe.to_dict(), "seed": seed, "classes": classes}, run_id=run_id)
    has_val = "val" in splits
    if not has_val:
        print("Note: no validation split; the last epoch's model is kept")
    try:
        for epoch in range(start_epoch, recipe.epochs):
            started = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            sampler.set_epoch(epoch)
            train_loss, train_acc = train_one_epoch(
                net, train_loader, pipeline, optimizer, loss_fn, device, scaler, progress,
                description=f"epoch {epoch + 1}/{recipe.epochs}", amp=amp,
                accumulate=recipe.accumulate, mixup_alpha=recipe.mixup_alpha,
            )
            scheduler.step()
            broadcast_buffers(model)  # each rank updated BatchNorm statistics on its own batch
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
                   "val_loss": math.nan, "val_acc": math.nan}
            if has_val:
                val_loss, val_metrics = evaluate_clips(model, splits["val"], pipeline, recipe,
                                                       num_frames, device, classes, **eval_kwargs)
                row.update(val_loss=val_loss, val_acc=val_metrics["accuracy"])
            row["seconds"] = round(time.perf_counter() - started, 2)
            history.append(row)
            print(f"epoch {epoch + 1:>3}/{recipe.epochs}  lr {lr:.2e}  train loss {train_loss:.4f} "
                  f"acc {train_acc:.3f}  val loss {row['val_loss']:.4f} acc {row['val_acc']:.3f}  "
                  f"({row['seconds']:.1f} s)")
            tracker.log({"train/loss": train_loss, "train/acc": train_acc,
                         "train/epoch": epoch + 1, "train/lr": lr}, step=epoch + 1)
            if has_val:
                tracker.log({"val/loss": row["val_loss"], "val/acc": row["val_acc"]},
                            step=epoch + 1)
            improved = not has_val or (row["val_acc"], -row["val_loss"]) > (
                best["val_acc"], -best["val_loss"])
            if improved:
                best = {"epoch": epoch + 1, "val_acc": row["val_acc"], "val_loss": row["val_loss"]}
                if ranks.is_main:
                    save_torch(model_bundle(model, recipe, classes, num_frames, mean, std),
                               checkpoints / "best.pt")
            if ranks.is_main:
                save_torch({
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                    "torch_rng": torch.get_rng_state(), "epoch": epoch, "history": history,
                    "best": best, "run_id": tracker.run_id,
                }, checkpoints / "last.pt")

        if ranks.world_size > 1:
            checksum = check_ranks_agree(model)
            print(f"All {ranks.world_size} ranks agree: weights checksum {checksum:.6f}")
            dist.barrier()  # rank 0 has written best.pt before any rank reads it
        # Report on the test set with the model chosen on validation: the test set chose nothing.
        bundle = load_torch(checkpoints / "best.pt")
        model.load_state_dict(bundle["state_dict"])
        results: dict[str, Any] = {"classes": classes, "recipe": recipe.name, "seed": seed,
                                   "best_epoch": best["epoch"], "segment_seconds": segment_seconds,
                                   "device": str(device), "world_size": ranks.world_size}
        for split in ("val", "test"):
            if split in splits:
                _, results[split] = evaluate_clips(model, splits[split], pipeline, recipe,
                                                   num_frames, device, classes, **eval_kwargs)
            else:
                results[split] = None
                print(f"Note: no {split} split, so no {split} metrics")
        if results["test"] and ranks.is_main:
            tracker.log({"test/acc": results["test"]["accuracy"],
                         "test/macro_f1": results["test"]["macro_f1"]})
            figure = plot_confusion_matrix(results["test"]["confusion_matrix"], classes)
            figure.savefig(output_dir / "confusion_matrix.png", dpi=100)
            tracker.log_figure("test/confusion_matrix", figure)
            plt.close(figure)
    finally:
        tracker.finish()

    history_table = pd.DataFrame(history)
    if ranks.is_main:
        write_csv(history_table, output_dir / "history.csv")
        write_json(output_dir / "metrics.json", results)
        save_torch(bundle, output_dir / "model.pt")
    return TrainResult(results, history_table, output_dir, model, recipe)
