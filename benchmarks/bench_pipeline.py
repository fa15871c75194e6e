"""Time the seed's per-item data pipeline against this project's, on the same clips and machine.

    make bench                      # or: python benchmarks/bench_pipeline.py --clips 64

Generates N clips of 30 s (22,050 Hz, 16-bit wav) in a temporary folder, then measures, each
phase in a fresh process (so that its peak RSS is its own):

- seed data: the seed's per-item pipeline, reproduced below: decode the file, build a new
  MelSpectrogram, compute it, pool it to a 224 x 224 image on the CPU, for every clip of every
  epoch (the seed-baseline features: Mel power, no dB, no normalization);
- project data, first epoch: an empty feature cache is filled (`engine.experiment.cache.FeatureCache`:
  hash; decode and log-Mel with torchaudio's transforms in DataLoader worker processes, one
  clip per worker process, decoded block by block; write) and one epoch of model inputs is made
  from it as `audiocls train` does (`engine.experiment.runner`'s segment loader reading the memory-mapped
  cache, then the model's own first stage, `models.LogMelToImage`, on the device);
- these two take turns --repeats times (each first epoch with a new empty cache), so that
  both see the same machine when its speed drifts; the medians are reported;
- project data, warm: a new run on the filled cache (look-up by file stat, then one epoch),
  repeated --warm-epochs times; the median is reported;
- training: samples/s of ResNet18 at 224 px with the seed's loop (per-item pipeline, summed
  loss) and with `train.train_one_epoch` on the cache (the model takes log-Mel segments);
  evaluation: the seed's batch size of 1 against `predict.predict_clips` in batches.

Both pipelines produce the same model inputs: (batch, 3, 224, 224) from the whole 30 s clip,
and the cached Mel power equals the seed's per-item Mel power (checked, and printed).
Writes benchmarks/results/bench_pipeline.json. Peak RSS is each phase's main process; the
largest DataLoader worker's is recorded apart (most of it pages shared with the main process).
Timings on a shared machine are noisy: the load average before and after is recorded with them.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

RESULTS = REPO / "benchmarks" / "results" / "bench_pipeline.json"
SAMPLE_RATE = 22050
NUM_CLASSES = 4
TARGETS = {"ratio_first": 1.5, "ratio_warm": 20.0}  # on the course's 2-core CPU machine


# ---------------------------------------------------------------------------------------------
# The clips


def generate_clips(folder: Path, clips: int, seconds: float, seed: int = 0) -> list[Path]:
    """Write `clips` wav files of a few random tones in noise; return their paths."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    paths = []
    for index in range(clips):
        samples = rng.normal(0, 0.02, t.shape)
        for _ in range(3):
            frequency = rng.uniform(80, 1000) * (1 + index % NUM_CLASSES)  # class sets the pitch
            samples += rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * (frequency * t + rng.uniform()))
        path = folder / f"clip{index:05d}.wav"
        sf.write(str(path), samples.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def bench_recipe() -> Any:
    """Return the seed-baseline recipe as written: ResNet18, 224 px, 30 s, batches of 16."""
    from audiocls_utils.config import get_recipe

    return replace(get_recipe("seed-baseline"), pretrained="no")  # offline: weights need not load


def import_everything() -> float:
    """Import what the phases use (no timing includes an import); return the RSS then, in MiB."""
    import torch  # noqa: F401
    import torchaudio  # noqa: F401

    import audiocls_utils.engine.experiment.runner  # noqa: F401
    import audiocls_utils.train  # noqa: F401

    status = Path("/proc/self/status")
    if status.exists():
        line = next(x for x in status.read_text().splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024
    return peak_rss_mb()


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Return this process's peak resident memory in MiB (RUSAGE_CHILDREN: its largest child's)."""
    peak = resource.getrusage(who).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# ---------------------------------------------------------------------------------------------
# The seed's per-item pipeline, reproduced


class SeedClips:
    """The seed's Dataset: every item decodes its file and builds a new MelSpectrogram."""

    def __init__(self, paths: list[Path], targets: list[int], image_size: int) -> None:
        self.paths, self.targets, self.image_size = paths, targets, image_size

    def __len__(self) -> int:
        return len(self.paths)

    def mel(self, index: int) -> Any:
        """Decode clip `index` and return its Mel power (n_mels, frames), as the seed did."""
        import torch
        import torchaudio

        config = bench_recipe().feature
        samples, sample_rate = sf.read(str(self.paths[index]), dtype="float32", always_2d=True)
        waveform = torch.from_numpy(samples.mean(axis=1))  # torchaudio.load in the seed
        if sample_rate != config.sample_rate:
            waveform = torchaudio.functional.resample(waveform, sample_rate, config.sample_rate)
        transform = torchaudio.transforms.MelSpectrogram(  # built anew for every item
            sample_rate=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
            n_mels=config.n_mels)
        return transform(waveform)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        import torch

        image = torch.nn.functional.adaptive_avg_pool2d(self.mel(index).unsqueeze(0),
                                                        (self.image_size, self.image_size))
        return image.repeat(3, 1, 1), self.targets[index]  # (3, image_size, image_size)


def seed_loader(paths: list[Path], targets: list[int], workers: int) -> Any:
    """Return the seed's DataLoader: per-item pipeline, shuffled batches."""
    from torch.utils.data import DataLoader

    recipe = bench_recipe()
    return DataLoader(SeedClips(paths, targets, recipe.image_size), batch_size=recipe.batch_size,
                      shuffle=True, num_workers=workers)


def seed_data_phase(paths: list[Path], targets: list[int], workers: int, check: int) -> dict:
    """Time one epoch of the seed's model inputs; return its Mel power of the first clips."""
    baseline_mb = import_everything()
    started = time.perf_counter()
    shapes = {tuple(images.shape[1:]) for images, _ in seed_loader(paths, targets, workers)}
    seconds = time.perf_counter() - started
    dataset = SeedClips(paths, targets, bench_recipe().image_size)
    return {"seconds": seconds, "input_shapes": sorted(shapes), "peak_rss_mb": peak_rss_mb(),
            "baseline_rss_mb": baseline_mb, "mels": [dataset.mel(i).numpy() for i in range(check)]}


def seed_train_phase(paths: list[Path], targets: list[int], workers: int, device: str) -> dict:
    """Time the seed's training loop (one epoch) and its validation at batch size 1."""
    baseline_mb = import_everything()
    import torch

    from audiocls_utils.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet18", NUM_CLASSES, pretrained="no")[1].to(device)  # images in
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")  # the seed's summed loss
    model.train()
    seen, started = 0, time.perf_counter()
    for images, batch_targets in seed_loader(paths, targets, workers):
        images, batch_targets = images.to(device), batch_targets.to(device)
        loss = loss_fn(model(images), batch_targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(batch_targets)
    train_seconds = time.perf_counter() - started

    model.eval()
    dataset = SeedClips(paths, targets, bench_recipe().image_size)
    started = time.perf_counter()
    with torch.no_grad():
        for index in range(len(dataset)):  # the seed validated one clip at a time
            image, _ = dataset[index]
            model(image.unsqueeze(0).to(device)).argmax(1).item()
    eval_seconds = time.perf_counter() - started
    return {"train_samples_per_s": seen / train_seconds,
            "eval_clips_per_s": len(dataset) / eval_seconds, "peak_rss_mb": peak_rss_mb(),
            "baseline_rss_mb": baseline_mb}


# ---------------------------------------------------------------------------------------------
# This project's pipeline


def project_parts(paths: list[Path], targets: list[int], cache_root: Path, workers: int | None,
                  device: str) -> tuple[Any, Any, Any, Any]:
    """Look up (or fill) the cache; return the entries, training loader, sampler and the model's
    input stage, as `engine.experiment.runner.run_experiment` builds them."""
    import torch
    from torch.utils.data import DataLoader

    from audiocls_utils.engine.experiment.cache import FeatureCache
    from audiocls_utils.engine.experiment.runner import (
        SampledSegments,
        SegmentSampler,
        collate_segments,
        default_workers,
        loader_settings,
    )
    from audiocls_utils.models import LogMelToImage

    recipe = bench_recipe()
    torch_device = torch.device(device)
    entries = FeatureCache(cache_root).log_mels(paths, recipe.feature, torch_device,
                                                num_workers=workers, progress=False)
    workers = default_workers() if workers is None else workers
    num_frames = recipe.feature.seconds_to_frames(recipe.segment_seconds)
    sampler = SegmentSampler(len(entries), seed=0)
    loader = DataLoader(SampledSegments(entries, targets, num_frames, train=True),
                        batch_size=recipe.batch_size, sampler=sampler,
                        collate_fn=collate_segments, **loader_settings(torch_device, workers))
    to_image = LogMelToImage(recipe.image_size)  # seed-baseline: no statistics, no augmentation
    return entries, loader, sampler, to_image.to(torch_device)


def project_epoch(loader: Any, to_image: Any, device: str) -> set[tuple[int, ...]]:
    """Make one epoch of model inputs on the device; return their shapes (without the batch)."""
    import torch

    shapes = set()
    with torch.inference_mode():
        for segments, _, _ in loader:
            inputs = to_image(segments.to(device, non_blocking=True))
            shapes.add(tuple(inputs.shape[1:]))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return shapes


def project_data_phase(paths: list[Path], targets: list[int], cache_root: Path,
                       workers: int | None, device: str, warm_epochs: int, check: int) -> dict:
    """Time the first epoch on an empty cache, then new runs on the filled cache."""
    baseline_mb = import_everything()
    started = time.perf_counter()
    entries, loader, _, to_image = project_parts(paths, targets, cache_root, workers, device)
    shapes = project_epoch(loader, to_image, device)
    first = time.perf_counter() - started
    warm = []
    for _ in range(warm_epochs):
        started = time.perf_counter()
        _, loader, _, to_image = project_parts(paths, targets, cache_root, workers, device)
        shapes |= project_epoch(loader, to_image, device)
        warm.append(time.perf_counter() - started)
    return {"first_seconds": first, "warm_seconds": warm, "input_shapes": sorted(shapes),
            "peak_rss_mb": peak_rss_mb(), "baseline_rss_mb": baseline_mb,
            "workers_peak_rss_mb": peak_rss_mb(resource.RUSAGE_CHILDREN),
            "mels": [entries[i][...] for i in range(check)]}


def project_train_phase(paths: list[Path], targets: list[int], cache_root: Path,
                        workers: int | None, device: str) -> dict:
    """Time `train_one_epoch` on the warm cache, then `predict_clips` in batches."""
    baseline_mb = import_everything()
    import torch
    from torch.utils.data import DataLoader

    from audiocls_utils.data import SegmentDataset
    from audiocls_utils.models import create_model
    from audiocls_utils.predict import predict_clips
    from audiocls_utils.train import train_one_epoch

    entries, loader, sampler, _ = project_parts(paths, targets, cache_root, workers, device)
    torch_device = torch.device(device)
    torch.manual_seed(0)
    recipe = bench_recipe()
    model = create_model("resnet18", NUM_CLASSES, recipe.image_size, pretrained="no")
    model = model.to(torch_device)
    if torch_device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    amp = torch_device.type == "cuda" and torch.cuda.is_bf16_supported()
    sampler.set_epoch(0)
    started = time.perf_counter()
    train_one_epoch(model, loader, torch.nn.CrossEntropyLoss(), optimizer, torch_device, amp=amp)
    train_seconds = time.perf_counter() - started

    windows = SegmentDataset(entries, targets, loader.dataset.num_frames, train=False)
    started = time.perf_counter()
    predict_clips(model, DataLoader(windows, batch_size=recipe.batch_size), torch_device, amp)
    eval_seconds = time.perf_counter() - started
    return {"train_samples_per_s": len(sampler) / train_seconds,
            "eval_clips_per_s": len(entries) / eval_seconds, "peak_rss_mb": peak_rss_mb(),
            "baseline_rss_mb": baseline_mb}


# ---------------------------------------------------------------------------------------------
# Running the phases


def _child(queue: Any, function: Any, args: tuple) -> None:
    """Run one phase in this fresh process and send back its result (or its error)."""
    multiprocessing.set_start_method(None, force=True)  # DataLoader workers: the usual method
    try:
        queue.put(("ok", function(*args)))
    except BaseException as error:  # noqa: BLE001 - reported by the parent
        queue.put(("error", f"{type(error).__name__}: {error}"))


def in_fresh_process(function: Any, *args: Any) -> dict:
    """Run `function(*args)` in a new Python process (own imports, own peak RSS)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, function, args))
    process.start()
    status, result = queue.get()
    process.join()
    if status != "ok":
        raise SystemExit(f"{function.__name__} failed: {result}")
    return result


def merge_runs(runs: list[dict], times: str) -> dict:
    """Merge one phase's runs: every run's time, the largest peak RSS, the rest from the first."""
    merged = {**runs[0], times: [run[times] for run in runs]}
    merged["peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
    return merged


def machine() -> dict[str, Any]:
    """Describe the machine the figures come from."""
    import torch

    cpu = platform.processor()
    if Path("/proc/cpuinfo").exists():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                 .splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "gpu": gpu, "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "torch_threads": torch.get_num_threads()}


def main() -> None:
    """Parse arguments, run every phase, print the table and write the JSON."""
    from audiocls_utils.devices import pick_device
    from audiocls_utils.engine.experiment.runner import default_workers
    from audiocls_utils.features import extraction_workers
    from audiocls_utils.files import write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=64, help="number of clips (default 64)")
    parser.add_argument("--seconds", type=float, default=30.0, help="clip length (default 30)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="seed epochs and first (cold-cache) epochs to time, taking turns; "
                             "each figure is the median (default 3)")
    parser.add_argument("--warm-epochs", type=int, default=3, help="warm runs to time (median)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers of the project's pipeline (default: its own, "
                             "by CPU count)")
    parser.add_argument("--seed-workers", type=int, default=0,
                        help="DataLoader workers of the seed's pipeline (default 0, the "
                             "DataLoader default it used)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--no-train", action="store_true", help="time the data pipelines only")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where clips and cache go (default: a temporary folder, deleted)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    device = str(pick_device(args.device))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="audiocls-bench-"))
    load_before = os.getloadavg()
    try:
        print(f"Generating {args.clips} clips of {args.seconds:g} s in {workdir} ...", flush=True)
        paths = sorted((workdir / "clips").glob("*.wav"))  # --workdir: reuse earlier clips
        if len(paths) != args.clips:
            shutil.rmtree(workdir / "clips", ignore_errors=True)
            paths = generate_clips(workdir / "clips", args.clips, args.seconds)
        shutil.rmtree(workdir / "cache", ignore_errors=True)  # every first epoch starts cold
        cache_roots = [workdir / "cache" / f"run{r}" for r in range(args.repeats)]
        targets = [i % NUM_CLASSES for i in range(len(paths))]
        check = min(4, len(paths))
        seeds, projects = [], []
        for run, cache_root in enumerate(cache_roots, 1):  # taking turns: the machine's speed
            print(f"Run {run} of {args.repeats}: the seed's epoch, then the project's first "
                  "epoch (cold cache)" + (" and warm runs" if run == args.repeats else "") +
                  " ...", flush=True)  # drifts, and both pipelines then see the same drift
            seeds.append(in_fresh_process(seed_data_phase, paths, targets, args.seed_workers,
                                          check))
            projects.append(in_fresh_process(
                project_data_phase, paths, targets, cache_root, args.workers, device,
                args.warm_epochs if run == args.repeats else 0, check))
        seed, project = merge_runs(seeds, "seconds"), merge_runs(projects, "first_seconds")
        project["warm_seconds"] = projects[-1]["warm_seconds"]
        train: dict[str, dict] = {}
        if not args.no_train:
            print("Training loops, ResNet18 at 224 px ...", flush=True)
            train["seed"] = in_fresh_process(seed_train_phase, paths, targets, args.seed_workers,
                                             device)
            train["project"] = in_fresh_process(project_train_phase, paths, targets,
                                                cache_roots[-1], args.workers, device)
        cache_mb = sum(p.stat().st_size for p in cache_roots[-1].rglob("*.npy")) / 2**20
        audio_mb = sum(p.stat().st_size for p in paths) / 2**20
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    # Same model inputs: equal shapes, and the cache holds the seed's Mel power.
    assert seed["input_shapes"] == project["input_shapes"], (seed["input_shapes"],
                                                             project["input_shapes"])
    mel_error = max(float(np.abs(a - b).max() / np.abs(a).max())
                    for a, b in zip(seed["mels"], project["mels"], strict=True))
    assert mel_error < 1e-4, f"cached Mel power differs from the seed's by {mel_error:.2e}"

    n = len(paths)
    result: dict[str, Any] = {
        "clips": n, "seconds_per_clip": args.seconds, "device": device,
        "seed_workers": args.seed_workers,
        "workers": {"features": extraction_workers(device) if args.workers is None else args.workers,
                    "segments": default_workers() if args.workers is None else args.workers},
        "recipe": bench_recipe().name, "batch_size": bench_recipe().batch_size,
        "image_size": bench_recipe().image_size,
        "repeats": args.repeats,
        "seed_clips_per_s": n / statistics.median(seed["seconds"]),
        "seed_runs_clips_per_s": [n / s for s in seed["seconds"]],
        "first_epoch_clips_per_s": n / statistics.median(project["first_seconds"]),
        "first_epoch_runs_clips_per_s": [n / s for s in project["first_seconds"]],
        "warm_clips_per_s": n / statistics.median(project["warm_seconds"]),
        "warm_runs_clips_per_s": [n / s for s in project["warm_seconds"]],
    }
    result["ratio_first"] = result["first_epoch_clips_per_s"] / result["seed_clips_per_s"]
    result["ratio_warm"] = result["warm_clips_per_s"] / result["seed_clips_per_s"]
    result.update({
        "peak_rss_mb": project["peak_rss_mb"], "seed_peak_rss_mb": seed["peak_rss_mb"],
        "workers_peak_rss_mb": max(run["workers_peak_rss_mb"] for run in projects),
        "rss_after_imports_mb": project["baseline_rss_mb"],
        "audio_mb": audio_mb, "cache_mb": cache_mb,
        "model_input_shape": list(project["input_shapes"][0]),
        "mel_max_relative_difference": mel_error,
    })
    if train:
        result.update({
            "seed_train_samples_per_s": train["seed"]["train_samples_per_s"],
            "train_samples_per_s": train["project"]["train_samples_per_s"],
            "seed_eval_clips_per_s": train["seed"]["eval_clips_per_s"],
            "eval_clips_per_s": train["project"]["eval_clips_per_s"],
            "train_peak_rss_mb": max(train["seed"]["peak_rss_mb"],
                                     train["project"]["peak_rss_mb"]),
        })
        result["ratio_train"] = result["train_samples_per_s"] / result["seed_train_samples_per_s"]
        result["ratio_eval"] = result["eval_clips_per_s"] / result["seed_eval_clips_per_s"]
    result["targets"] = {name: {"target": goal, "met": result[name] >= goal}
                         for name, goal in TARGETS.items()}
    result["machine"] = {**machine(), "load_average_before": list(load_before),
                         "load_average_after": list(os.getloadavg())}
    result["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
    result["command"] = " ".join(["python benchmarks/bench_pipeline.py", *sys.argv[1:]])
    write_json(args.out, result)
    print_table(result)
    print(f"Wrote {args.out}")


def print_table(r: dict[str, Any]) -> None:
    """Print the figures as a small table."""
    rows = [("data, first epoch (cold cache)", r["seed_clips_per_s"], r["first_epoch_clips_per_s"],
             "clips/s"),
            ("data, later epochs (warm cache)", r["seed_clips_per_s"], r["warm_clips_per_s"],
             "clips/s")]
    if "train_samples_per_s" in r:
        rows += [("training, ResNet18 224 px", r["seed_train_samples_per_s"],
                  r["train_samples_per_s"], "samples/s"),
                 ("evaluation", r["seed_eval_clips_per_s"], r["eval_clips_per_s"], "clips/s")]
    print(f"\n{r['clips']} clips of {r['seconds_per_clip']:g} s on {r['machine']['cpu_count']} CPU "
          f"cores ({r['machine']['cpu']}), device {r['device']}; workers: seed "
          f"{r['seed_workers']}, project {r['workers']['features']} processes for features and "
          f"{r['workers']['segments']} for segments; medians of {r['repeats']} runs; "
          f"load average {r['machine']['load_average_before'][0]:.1f} before")
    print(f"{'':34}{'seed':>10}{'project':>10}{'ratio':>8}")
    for name, seed, project, unit in rows:
        print(f"{name:34}{seed:10.1f}{project:10.1f}{project / seed:7.1f}x  {unit}")
    print(f"peak RSS: project pipeline {r['peak_rss_mb']:.0f} MiB (its largest feature "
          f"worker {r['workers_peak_rss_mb']:.0f} MiB, mostly shared), seed pipeline "
          f"{r['seed_peak_rss_mb']:.0f} MiB ({r['rss_after_imports_mb']:.0f} MiB of it once "
          f"torch and the package are imported; audio {r['audio_mb']:.0f} MiB, cache "
          f"{r['cache_mb']:.0f} MiB on disk)")
    print(f"same model inputs: {tuple(r['model_input_shape'])} per clip; cached Mel power within "
          f"{r['mel_max_relative_difference']:.1e} of the seed's")
    for name, target in r["targets"].items():
        print(f"target {name} >= {target['target']:g}: {'met' if target['met'] else 'NOT met'} "
              f"({r[name]:.1f})")


if __name__ == "__main__":
    main()
