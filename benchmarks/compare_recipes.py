"""Compare recipes on one dataset and split: test accuracy and macro-F1 over training seeds.

The split is made once (--split-seed), so every recipe and seed sees the same clips; only the
training seed changes between repeats. Prints a Markdown table for docs/results.md and writes
results.csv. Besides the run's own result (the epoch chosen on validation, scored on test), it
scores the last epoch's weights on test: a figure with no epoch chosen, hence without the
noise of that choice, for comparing two versions of the code (docs/results.md says why).
Example (docs/results.md's rows):

    python benchmarks/compare_recipes.py --data-dir data/synth --split group \\
        --recipes original-baseline baseline course --profile cpu --seeds 0 1 --out runs/compare-synth
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
from common import SPEECH, add_dataset_arguments, split_dataset

from audiocls_utils.config import Recipe, apply_profile, get_recipe
from audiocls_utils.data import class_names, load_manifest
from audiocls_utils.devices import pick_device
from audiocls_utils.engine.experiment.cache import FeatureCache
from audiocls_utils.engine.experiment.runner import (
    TrainResult,
    compute_split_features,
    evaluate_clips,
    run_experiment,
)
from audiocls_utils.files import load_torch, write_csv
from audiocls_utils.models import create_model


def adapt(recipe: Recipe, features: str, clips_per_class: int | None) -> Recipe:
    """Return `recipe` with speech STFT settings (keeping its dB choice) and a clip cap."""
    if features == "speech":
        feature = replace(SPEECH, to_db=recipe.feature.to_db, top_db=recipe.feature.top_db)
        recipe = replace(recipe, feature=feature, segment_seconds=min(recipe.segment_seconds, 1.0))
    if clips_per_class is not None:
        recipe = replace(recipe, clips_per_class=clips_per_class)
    return recipe


def override(recipe: Recipe, settings: list[str]) -> Recipe:
    """Return `recipe` with KEY=VALUE settings applied (VALUE read as JSON when it parses)."""
    changes = {}
    for setting in settings:
        key, _, value = setting.partition("=")
        try:
            changes[key] = json.loads(value)
        except json.JSONDecodeError:
            changes[key] = value
    return Recipe.from_dict({**recipe.to_dict(), **changes}) if changes else recipe


def last_epoch_test_accuracy(result: TrainResult) -> float:
    """Return the test accuracy of the run's last-epoch weights (checkpoints/last.pt)."""
    run, recipe = result.output_dir, result.recipe
    manifest = load_manifest(run / "manifest.csv")  # the run's clips, after its per-class cap
    classes = class_names(manifest)
    num_frames = load_torch(run / "model.pt")["num_frames"]
    model = create_model(recipe.model, len(classes), recipe.image_size, pretrained="no")
    model.load_state_dict(load_torch(run / "checkpoints" / "last.pt")["model"])
    device = pick_device()
    test = compute_split_features(manifest[manifest["split"] == "test"], classes, recipe.feature,
                                  device, progress=False, cache=FeatureCache())["test"]
    _, metrics, _ = evaluate_clips(model.to(device), test, recipe, num_frames, device, classes)
    return metrics["accuracy"]


def summarize(results: pd.DataFrame) -> str:
    """Return a Markdown table: mean and spread of each figure per recipe."""
    columns = {"test_accuracy": "test accuracy", "test_macro_f1": "test macro-F1",
               "val_accuracy": "val accuracy", "last_epoch_test_accuracy": "test accuracy, last epoch"}
    lines = ["| recipe | seeds | " + " | ".join(columns.values()) + " | minutes per run |",
             "| --- | --- | " + " | ".join("---" for _ in columns) + " | --- |"]
    for recipe, runs in results.groupby("recipe", sort=False):
        spread = (lambda s: f" ± {s.std(ddof=0):.3f}") if len(runs) > 1 else (lambda s: "")
        figures = " | ".join(f"{runs[c].mean():.3f}{spread(runs[c])}" for c in columns)
        lines.append(f"| {recipe} | {', '.join(map(str, runs['seed']))} | {figures} | "
                     f"{runs['seconds'].mean() / 60:.1f} |")
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, train every recipe with every seed, print and save the results."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser)
    parser.add_argument("--recipes", nargs="+", default=["original-baseline", "baseline", "course"])
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "full"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--features", default="recipe", choices=["recipe", "speech"],
                        help="speech: 8 kHz STFT settings for spoken words (FSDD)")
    parser.add_argument("--clips-per-class", type=int, default=None,
                        help="cap per class and split, to keep CPU runs short")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="change recipe settings after the profile, e.g. mixup_alpha=0")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    manifest = split_dataset(args)
    rows = []
    for name in args.recipes:
        recipe = override(adapt(apply_profile(get_recipe(name), args.profile), args.features,
                                args.clips_per_class), args.set)
        for seed in args.seeds:
            started = time.perf_counter()
            result = run_experiment(manifest, recipe, args.out / f"{name}-seed{seed}", seed=seed,
                                    tracking_mode="disabled", progress=False)
            test = result.metrics["test"]
            rows.append({"recipe": name, "profile": args.profile, "seed": seed,
                         "test_accuracy": test["accuracy"], "test_macro_f1": test["macro_f1"],
                         "test_clips": test["num_clips"],
                         "val_accuracy": result.metrics.get("val", {}).get("accuracy", float("nan")),
                         "best_epoch": result.metrics["best_epoch"],
                         "seconds": round(time.perf_counter() - started, 1),
                         "last_epoch_test_accuracy": last_epoch_test_accuracy(result)})
            print(f"==> {name} seed {seed}: test accuracy {test['accuracy']:.3f}, macro-F1 "
                  f"{test['macro_f1']:.3f} ({test['num_clips']} clips)", flush=True)
            write_csv(pd.DataFrame(rows), args.out / "results.csv")  # partial results survive
    print(summarize(pd.DataFrame(rows)))


if __name__ == "__main__":
    main()
