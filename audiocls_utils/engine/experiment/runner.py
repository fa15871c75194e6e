"""Run a whole experiment: chapter 03's training loop plus what a real run needs.

`run_experiment` trains with the chapters' own `train_one_epoch`, `evaluate`-style clip scoring
(`predict_clips`), `create_model`, `make_scheduler`, `SegmentDataset` and `Augment`, and adds: the
feature cache, checkpoints and `--resume`, a run folder that holds one run (checked and locked:
see `run_folder`), bf16 autocast on GPUs, DistributedDataParallel under torchrun, crops drawn
reproducibly whatever the number of workers, atomic writes, and SwanLab tracking that never stops
training. It is what `audiocls train` runs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from tqdm.auto import tqdm

from ...augment import Augment, has_augmentation
from ...config import FeatureConfig, Recipe
from ...data import SegmentDataset, check_splits, class_names, limit_per_class, save_manifest
from ...devices import pick_device
from ...errors import AudioclsError
from ...features import (
    LogMelSource,
    extract_log_mels,
    feature_dtype,
    feature_moments,
    read_segment,
    stats_from_moments,
)
from ...files import load_torch, save_torch, write_csv, write_json
from ...metrics import classification_metrics
from ...models import create_model
from ...plots import plot_confusion_matrix
from ...predict import load_bundle, model_bundle, predict_clips
from ...train import is_better, make_scheduler, seed_everything, train_one_epoch
from .cache import FeatureCache
from .distributed import (
    Ranks,
    all_reduce,
    broadcast_buffers,
    check_ranks_agree,
    quiet_unless_main,
    start_distributed,
)
from .rejection import calibrate_rejection
from .run_folder import (
    Plan,
    RunLock,
    clear_run,
    finish_run,
    plan_run,
    remove_leftovers,
    run_record,
)
from .tracking import Tracker

# What `checkpoints/last.pt` holds: enough to go on from the end of its epoch.
CHECKPOINT_KEYS = {"model", "optimizer", "scheduler", "torch_rng", "epoch", "history", "best"}


def default_workers() -> int:
    """Return DataLoader workers that serve segments: none on 2 cores, up to 4 on bigger machines."""
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(4, cores - 1)


def loader_settings(device: torch.device, num_workers: int, pin_memory: bool | None = None
                    ) -> dict[str, Any]:
    """Return DataLoader settings: workers, pinned memory on CUDA, persistent workers."""
    return {
        "num_workers": num_workers,
        "pin_memory": device.type == "cuda" if pin_memory is None else pin_memory,
        "persistent_workers": num_workers > 0,  # no new worker processes every epoch
    }


def use_amp(device: torch.device, amp: bool = True) -> bool:
    """Return True where bf16 autocast runs: on a CUDA GPU that runs bfloat16 natively (Ampere+).

    Older GPUs (a T4, a V100) only emulate bf16, slower than float32, so they train in float32.
    """
    return (amp and device.type == "cuda"
            and torch.cuda.is_bf16_supported(including_emulation=False))


# ----------------------------------------------------------------------------- segments

class SegmentBatch(NamedTuple):
    """A batch of segments: (batch, n_mels, num_frames) features, targets and clip indices."""

    segments: torch.Tensor
    targets: torch.Tensor
    clips: torch.Tensor


class SampledSegments(SegmentDataset):
    """The chapters' SegmentDataset, with crops chosen by `SegmentSampler` and whole batches read
    at once (each segment copied from memory or its cache file straight into the batch)."""

    def locate(self, index: int | tuple[int, float]) -> tuple[int, int]:
        """Return the clip and first frame; a (clip, position in [0, 1)) pair fixes the crop."""
        if not (self.train and isinstance(index, tuple)):
            return super().locate(index)  # type: ignore[arg-type]
        clip, position = index
        spare = max(0, self.log_mels[clip].shape[-1] - self.num_frames)
        return clip, min(spare, int(position * (spare + 1)))

    def __getitems__(self, indices: Sequence[int | tuple[int, float]]) -> SegmentBatch:
        """Return a whole batch, as the default collate would stack the items, in one copy."""
        located = [self.locate(index) for index in indices]
        first = self.log_mels[located[0][0]]
        segments = torch.empty((len(located), *first.shape[:-1], self.num_frames),
                               dtype=feature_dtype(first))
        for row, (clip, start) in enumerate(located):
            read_segment(self.log_mels[clip], start, self.num_frames, segments[row])
        return SegmentBatch(segments, torch.tensor([self.targets[clip] for clip, _ in located]),
                            torch.tensor([clip for clip, _ in located]))


def collate_segments(batch: SegmentBatch | list[tuple[torch.Tensor, int, int]]) -> SegmentBatch:
    """Pass on a batch that `SampledSegments.__getitems__` made; stack a list of items."""
    if isinstance(batch, SegmentBatch):
        return batch
    segments, targets, clips = zip(*batch, strict=True)
    return SegmentBatch(torch.stack(segments), torch.tensor(targets), torch.tensor(clips))


class SegmentSampler(Sampler[tuple[int, float]]):
    """Yield (clip, crop position in [0, 1)) pairs for one training epoch of one rank.

    Clips are shuffled and shared between ranks by DistributedSampler (seeded by seed + epoch);
    positions are drawn from (seed, epoch, rank) in the main process. So the crops depend on
    neither the number of DataLoader workers nor their persistence, and a resumed run repeats
    them. Call `set_epoch` before each epoch.
    """

    def __init__(self, num_clips: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.order = DistributedSampler(range(num_clips), num_replicas=world_size, rank=rank,
                                        shuffle=True, seed=seed)
        self.seed, self.rank, self.epoch = seed, rank, 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and crops to yield."""
        self.epoch = epoch
        self.order.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[tuple[int, float]]:
        clips = list(self.order)
        state = np.random.SeedSequence([self.seed, self.epoch, self.rank]).generate_state(1)
        generator = torch.Generator().manual_seed(int(state[0]))
        positions = torch.rand(len(clips), generator=generator, dtype=torch.float64).tolist()
        return iter(zip(clips, positions, strict=True))


# ----------------------------------------------------------------------------- features

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
    """Compute each clip's log-Mel once and group them by split.

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


def evaluate_clips(model: nn.Module, features: Features, recipe: Recipe, num_frames: int,
                   device: torch.device, classes: Sequence[str], ranks: Ranks | None = None,
                   amp: bool = False, num_workers: int = 0, pin_memory: bool = False
                   ) -> tuple[float, dict[str, Any], torch.Tensor]:
    """Score whole clips with `predict_clips` (windows averaged); return the clip loss, metrics
    and probabilities (clips, classes).

    Under DDP each rank scores every world_size-th clip and the probabilities are summed, so
    every rank gets the same metrics.
    """
    ranks = ranks or Ranks()
    hop = max(1, int(num_frames * recipe.eval_hop_fraction))
    share = range(ranks.rank, len(features.targets), ranks.world_size)
    probabilities = torch.zeros(len(features.targets), len(classes))
    if share:
        windows = SampledSegments([features.log_mels[i] for i in share],
                                  [features.targets[i] for i in share], num_frames, train=False,
                                  hop_frames=hop)
        loader = DataLoader(windows, batch_size=recipe.batch_size, num_workers=num_workers,
                            pin_memory=pin_memory, collate_fn=collate_segments)
        probabilities[ranks.rank :: ranks.world_size] = predict_clips(model, loader, device, amp)
    probabilities = all_reduce(probabilities)
    targets = torch.tensor(features.targets)
    loss = float(nn.functional.nll_loss(probabilities.clamp_min(1e-8).log(), targets))
    metrics = classification_metrics(targets.tolist(), probabilities.argmax(1).tolist(), classes)
    return loss, metrics, probabilities


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """Build Adam or AdamW with the recipe's learning rate and weight decay."""
    optimizers = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if recipe.optimizer not in optimizers:
        raise AudioclsError(f"Unknown optimizer {recipe.optimizer!r}; choose {sorted(optimizers)}")
    return optimizers[recipe.optimizer](model.parameters(), lr=recipe.lr,
                                        weight_decay=recipe.weight_decay)


# ----------------------------------------------------------------------------- the experiment

@dataclass
class RunOptions:
    """How `run_experiment` runs a recipe (what it trains is the manifest and the recipe)."""

    device: str | torch.device | None = None  # cuda, mps or cpu; None: the best available
    seed: int = 42
    tracking_mode: str | None = None  # SwanLab's mode; None: $SWANLAB_MODE, else offline
    progress: bool = True
    resume: bool = False  # go on from checkpoints/last.pt of the same run
    overwrite: bool = False  # replace the folder's run, whatever its settings
    split: str | None = None  # how the manifest was split: recorded and compared (None: unknown)
    # Speed switches, all on by default: the feature cache (True: the default one; a folder or a
    # FeatureCache; False keeps every log-Mel in RAM), DataLoader processes (None: by CPU count),
    # bf16 autocast on CUDA, and channels-last and pinned memory (None: on with CUDA).
    cache: FeatureCache | str | Path | bool = True
    num_workers: int | None = None
    amp: bool = True
    channels_last: bool | None = None
    pin_memory: bool | None = None


@dataclass
class TrainResult:
    """What `run_experiment` returns: metrics, history and where the files went."""

    metrics: dict[str, Any]
    history: pd.DataFrame
    output_dir: Path
    model: nn.Module
    recipe: Recipe
    trained: bool = True  # False: the folder held this run finished, returned as it was


def run_experiment(manifest: pd.DataFrame, recipe: Recipe, output_dir: str | Path,
                   options: RunOptions | None = None, **settings: Any) -> TrainResult:
    """Train `recipe` on the manifest's train split, select on val, report on test.

    `options` (or its fields as keywords, e.g. `seed=0, resume=True`) say how: see `RunOptions`.
    Writes to `output_dir`: run.json (what defines the run, first), manifest.csv, recipe.json,
    checkpoints/{best,last}.pt, history.csv, metrics.json and model.pt, each written atomically,
    holding `output_dir/run.lock` meanwhile. A folder holds one run (`run_folder.plan_run`
    decides): one of other settings stops the run before anything is written (`overwrite`
    deletes its files instead); the same run unfinished continues with `resume`; the same run
    finished is returned as it is.

    Under `torchrun --nproc_per_node=N` it trains with DistributedDataParallel: each rank trains
    on its share of the clips, metrics cover all ranks, and only rank 0 prints, tracks and
    writes files (the ranks must share the output folder's disk, as on one machine).
    """
    options = replace(options or RunOptions(), **settings)
    ranks, device, started_group = start_distributed(
        pick_device(str(options.device) if options.device else None))
    try:
        with quiet_unless_main():
            return _run(manifest, recipe, Path(output_dir), options, ranks, device)
    finally:
        if started_group:
            dist.destroy_process_group()


def _run(manifest: pd.DataFrame, recipe: Recipe, output_dir: Path, options: RunOptions,
         ranks: Ranks, device: torch.device) -> TrainResult:
    """Check the data and the run folder, then train (holding the folder's lock on rank 0)."""
    seed_everything(options.seed)
    manifest = limit_per_class(manifest, recipe.clips_per_class, seed=options.seed)
    for warning in check_splits(manifest):
        print(f"Warning: {warning}")
    classes = class_names(manifest)
    if len(classes) < 2:
        raise AudioclsError(f"Training needs at least two classes; the data has only {classes}. "
                            "Add a folder of clips of another class")
    record = run_record(recipe, options.seed, options.split, manifest)
    with RunLock(output_dir) if ranks.is_main else contextlib.nullcontext():
        plan = _share_plan(plan_run(output_dir, record, manifest, options.resume, options.overwrite)
                           if ranks.is_main else None, ranks)
        if ranks.is_main:
            remove_leftovers(output_dir)  # the folder is this run's: nobody else writes there
        if plan is Plan.FINISHED:
            print(f"{output_dir} holds this run, finished: nothing to train (delete the folder, "
                  "or train into another --output-dir, to train it again)")
            return finished_result(output_dir, recipe)
        last = output_dir / "checkpoints" / "last.pt"
        state = read_checkpoint(last) if plan is Plan.RESUME and last.exists() else None
        if options.resume and state is None:
            print(f"No checkpoint in {last.parent}; starting from scratch")
        if ranks.is_main:
            _start_folder(output_dir, plan, record, manifest, recipe)
        training = _prepare(manifest, classes, recipe, output_dir, options, ranks, device)
        return _train(training, state, record)


def _seed_rank(seed: int, rank: int, epoch: int) -> None:
    """Give ranks other than 0 their own augmentation draws (rank 0 keeps the single-process ones)."""
    if rank:
        torch.manual_seed(int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0]))


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load `checkpoints/last.pt`, or raise in one line naming it when it is damaged."""
    try:
        state = load_torch(path)
    except Exception as error:  # torn or overwritten: torch raises many kinds of error for those
        raise AudioclsError(f"{path} is damaged and cannot be read ({type(error).__name__}); "
                            "delete it to train this run again from epoch 1, or train into "
                            "another --output-dir") from None
    if not isinstance(state, dict) or CHECKPOINT_KEYS - set(state):
        raise AudioclsError(f"{path} is not a checkpoint of an audiocls run; delete it to train "
                            "this run again from epoch 1, or train into another --output-dir")
    return state


def finished_result(output_dir: Path, recipe: Recipe) -> TrainResult:
    """Read back the finished run in `output_dir` as `run_experiment` returned it."""
    try:
        metrics = json.loads((output_dir / "metrics.json").read_text())
        history = pd.read_csv(output_dir / "history.csv")
    except (OSError, ValueError) as error:
        raise AudioclsError(f"{output_dir}: cannot read the finished run ({type(error).__name__}: "
                            f"{error}); delete the folder or train into another --output-dir"
                            ) from None
    bundle = load_bundle(output_dir / "model.pt")
    model = create_model(bundle["model_name"], len(bundle["class_names"]), recipe.image_size,
                         pretrained="no")
    model.load_state_dict(bundle["state_dict"])
    return TrainResult(metrics, history, output_dir, model, recipe, trained=False)


def _share_plan(plan: Plan | None, ranks: Ranks) -> Plan:
    """Return rank 0's plan on every rank."""
    if ranks.world_size == 1:
        assert plan is not None
        return plan
    shared = [plan.value if plan else None]
    dist.broadcast_object_list(shared, src=0)
    return Plan(shared[0])


def _start_folder(output_dir: Path, plan: Plan, record: dict[str, Any], manifest: pd.DataFrame,
                  recipe: Recipe) -> None:
    """Write what defines the run, run.json first (after deleting the run `overwrite` replaces)."""
    if plan is Plan.FRESH:
        clear_run(output_dir)  # nothing, or the files of the run `overwrite` replaces
    write_json(output_dir / "run.json", record)
    if plan is Plan.FRESH:  # a resumed run's manifest.csv is this one: the fingerprints agree
        save_manifest(manifest, output_dir / "manifest.csv")
    write_json(output_dir / "recipe.json", recipe.to_dict())


# ----------------------------------------------------------------------------- training

@dataclass
class Training:
    """What the epochs of one run share: its data, model, optimizer, schedule and settings."""

    recipe: Recipe
    classes: list[str]
    output_dir: Path
    options: RunOptions
    ranks: Ranks
    device: torch.device
    amp: bool
    splits: dict[str, Features]
    segment_seconds: float
    num_frames: int
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_fn: nn.Module
    augment: Augment | None
    sampler: SegmentSampler
    train_loader: DataLoader
    eval_settings: dict[str, Any]

    def evaluate(self, split: str) -> tuple[float, dict[str, Any], torch.Tensor]:
        """Score the clips of `split` with the model as it is (see `evaluate_clips`)."""
        return evaluate_clips(self.model, self.splits[split], self.recipe, self.num_frames,
                              self.device, self.classes, **self.eval_settings)


def _prepare(manifest: pd.DataFrame, classes: list[str], recipe: Recipe, output_dir: Path,
             options: RunOptions, ranks: Ranks, device: torch.device) -> Training:
    """Compute the features, then build the model, augmentation, optimizer, schedule and loaders."""
    # No longer than a typical long clip: 30 s segments of 5 s clips would be mostly padding.
    segment_seconds = min(recipe.segment_seconds, float(manifest["duration"].quantile(0.95)))
    num_frames = recipe.feature.seconds_to_frames(segment_seconds)
    print(f"Recipe {recipe.name}: {recipe.model} at {recipe.image_size} px, {recipe.epochs} "
          f"epochs, segments of {segment_seconds:.2f} s ({num_frames} frames), device {device}"
          + (f" x {ranks.world_size} ranks" if ranks.world_size > 1 else ""))
    cache = resolve_cache(options.cache)
    if cache is not None:
        print(f"Feature cache: {cache.root}")
    progress = options.progress and ranks.is_main
    splits = compute_split_features(manifest, classes, recipe.feature, device, progress,
                                    options.num_workers, cache, ranks)
    train = splits["train"]
    mean, std = 0.0, 1.0
    if recipe.normalize:  # each rank reads its share of the clips; the sums add up
        moments = feature_moments(train.log_mels[ranks.rank :: ranks.world_size])
        mean, std = stats_from_moments(all_reduce(moments))

    # Seed again: computing features draws from the global RNG (a DataLoader takes its base seed
    # there) and a warm cache skips that, so the model would otherwise start elsewhere.
    seed_everything(options.seed)
    model = create_model(recipe.model, len(classes), recipe.image_size, mean, std,
                         recipe.pretrained).to(device)
    if device.type == "cuda" if options.channels_last is None else options.channels_last:
        model = model.to(memory_format=torch.channels_last)
    augment = (Augment(recipe, len(classes), mean, num_frames).to(device)
               if has_augmentation(recipe) else None)
    optimizer = make_optimizer(model, recipe)
    loader_kwargs = loader_settings(device, default_workers() if options.num_workers is None
                                    else options.num_workers, options.pin_memory)
    amp = use_amp(device, options.amp)
    eval_settings = {"ranks": ranks, "amp": amp, "num_workers": loader_kwargs["num_workers"],
                     "pin_memory": loader_kwargs["pin_memory"]}
    sampler = SegmentSampler(len(train.targets), options.seed, ranks.rank, ranks.world_size)
    train_loader = DataLoader(
        SampledSegments(train.log_mels, train.targets, num_frames, train=True),
        batch_size=recipe.batch_size, sampler=sampler, collate_fn=collate_segments,
        drop_last=len(sampler) > recipe.batch_size, **loader_kwargs,
    )
    return Training(recipe, classes, output_dir, options, ranks, device, amp, splits,
                    segment_seconds, num_frames, model, optimizer, make_scheduler(optimizer, recipe),
                    nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing), augment, sampler,
                    train_loader, eval_settings)


def _restore(t: Training, state: dict[str, Any] | None) -> tuple[list[dict], dict[str, Any], int,
                                                                  str | None]:
    """Load the checkpoint `state` into the run; return history, best epoch, next epoch, run id."""
    if state is None:
        return [], {"epoch": -1, "val_acc": -1.0, "val_loss": math.inf}, 0, None
    last = t.output_dir / "checkpoints" / "last.pt"
    try:
        t.model.load_state_dict(state["model"])
        t.optimizer.load_state_dict(state["optimizer"])
        t.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        raise AudioclsError(f"{last} does not fit this run ({type(error).__name__}); delete it to "
                            "train this run again from epoch 1, or train into another "
                            "--output-dir") from None
    print(f"Resuming from {last} after epoch {state['epoch'] + 1}")
    return state["history"], state["best"], state["epoch"] + 1, state.get("run_id")


def _train(t: Training, state: dict[str, Any] | None, record: dict[str, Any]) -> TrainResult:
    """Train in a checked run folder, from epoch 1 or from the checkpoint `state`; report on test."""
    history, best, start_epoch, run_id = _restore(t, state)
    ranks, checkpoints = t.ranks, t.output_dir / "checkpoints"
    _seed_rank(t.options.seed, ranks.rank, start_epoch)
    net: nn.Module = t.model
    if ranks.world_size > 1:
        net = DistributedDataParallel(t.model, device_ids=[t.device.index]
                                      if t.device.type == "cuda" else None)
    tracker = Tracker(experiment=t.output_dir.name,
                      mode=t.options.tracking_mode if ranks.is_main else "disabled",
                      log_dir=t.output_dir.parent / "swanlog", run_id=run_id,
                      config={**t.recipe.to_dict(), "seed": t.options.seed, "classes": t.classes})
    if ranks.is_main:
        print(tracker.line())
    has_val = "val" in t.splits
    if not has_val:
        print("Note: no validation split; the last epoch's model is kept")
    try:
        for epoch in range(start_epoch, t.recipe.epochs):
            row = _run_epoch(t, net, epoch, tracker)
            history.append(row)
            if not has_val or is_better(row["val_acc"], row["val_loss"],
                                        (best["val_acc"], best["val_loss"])):
                best = {"epoch": epoch + 1, "val_acc": row["val_acc"], "val_loss": row["val_loss"]}
                if ranks.is_main:
                    save_torch(model_bundle(t.model, t.recipe, t.classes, t.num_frames),
                               checkpoints / "best.pt")
            if ranks.is_main:
                save_torch({"model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(),
                            "scheduler": t.scheduler.state_dict(),
                            "torch_rng": torch.get_rng_state(), "epoch": epoch,
                            "history": history, "best": best, "run_id": tracker.run_id},
                           checkpoints / "last.pt")
        if ranks.world_size > 1:
            checksum = check_ranks_agree(t.model)
            print(f"All {ranks.world_size} ranks agree: weights checksum {checksum:.6f}")
            dist.barrier()  # rank 0 has written best.pt before any rank reads it
        bundle = load_torch(checkpoints / "best.pt")
        t.model.load_state_dict(bundle["state_dict"])
        results = _report(t, best, tracker, bundle)
    finally:
        tracker.finish()
    history_table = pd.DataFrame(history)
    if ranks.is_main:
        write_csv(history_table, t.output_dir / "history.csv")
        write_json(t.output_dir / "metrics.json", results)
        save_torch(bundle, t.output_dir / "model.pt")
        finish_run(t.output_dir, record)
    return TrainResult(results, history_table, t.output_dir, t.model, t.recipe)


def _run_epoch(t: Training, net: nn.Module, epoch: int, tracker: Tracker) -> dict[str, Any]:
    """Train one epoch (chapter 03's `train_one_epoch`), step the schedule, score validation."""
    started, lr, epochs = time.perf_counter(), t.optimizer.param_groups[0]["lr"], t.recipe.epochs
    t.sampler.set_epoch(epoch)
    batches = tqdm(t.train_loader, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False,
                   disable=not (t.options.progress and t.ranks.is_main))
    train_loss, train_acc = train_one_epoch(net, batches, t.loss_fn, t.optimizer, t.device,
                                            t.augment, t.recipe.accumulate, t.amp)
    # Each rank trained on an equal share: the mean of the ranks' means is the mean.
    train_loss, train_acc = (all_reduce(torch.tensor([train_loss, train_acc], dtype=torch.float64))
                             / t.ranks.world_size).tolist()
    t.scheduler.step()
    broadcast_buffers(t.model)  # each rank updated BatchNorm statistics on its own batch
    row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
           "val_loss": math.nan, "val_acc": math.nan}
    if "val" in t.splits:
        val_loss, val_metrics, _ = t.evaluate("val")
        row.update(val_loss=val_loss, val_acc=val_metrics["accuracy"])
    row["seconds"] = round(time.perf_counter() - started, 2)
    print(f"epoch {epoch + 1:>3}/{epochs}  lr {lr:.2e}  train loss {train_loss:.4f} "
          f"acc {train_acc:.3f}  val loss {row['val_loss']:.4f} acc {row['val_acc']:.3f}  "
          f"({row['seconds']:.1f} s)")
    tracker.log({"train/loss": train_loss, "train/acc": train_acc, "train/epoch": epoch + 1,
                 "train/lr": lr}, step=epoch + 1)
    if "val" in t.splits:
        tracker.log({"val/loss": row["val_loss"], "val/acc": row["val_acc"]}, step=epoch + 1)
    return row


def _report(t: Training, best: dict[str, Any], tracker: Tracker,
            bundle: dict[str, Any]) -> dict[str, Any]:
    """Score val and test with the model chosen on validation (the test set chose nothing), and
    calibrate the bundle's "none of these" threshold on val."""
    results: dict[str, Any] = {"classes": t.classes, "recipe": t.recipe.name, "seed": t.options.seed,
                               "best_epoch": best["epoch"], "segment_seconds": t.segment_seconds,
                               "device": str(t.device), "world_size": t.ranks.world_size}
    probabilities: dict[str, torch.Tensor] = {}
    for split in ("val", "test"):
        if split in t.splits:
            _, results[split], probabilities[split] = t.evaluate(split)
        else:
            results[split] = None
            print(f"Note: no {split} split, so no {split} metrics")
    calibrate_rejection(bundle, results, probabilities,
                        {split: files.targets for split, files in t.splits.items()})
    if results["test"] and t.ranks.is_main:
        tracker.log({"test/acc": results["test"]["accuracy"],
                     "test/macro_f1": results["test"]["macro_f1"]})
        figure = plot_confusion_matrix(results["test"]["confusion_matrix"], t.classes)
        figure.savefig(t.output_dir / "confusion_matrix.png", dpi=100)
        test = t.splits["test"]  # SwanLab's chart, and the most confident mistakes as audio
        tracker.log_test_set(test.paths, test.targets, probabilities["test"], t.classes,
                             t.recipe.feature, figure)
        plt.close(figure)
    return results
