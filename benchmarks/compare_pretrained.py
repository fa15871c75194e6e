"""Compare chapter 05's approaches on one dataset and split: the classical baseline (MFCC and log-Mel
statistics + logistic regression or an SVM), a frozen ResNet18 with a linear probe, and the
audio-pretrained models (AST and DistilHuBERT probes, CLAP zero-shot and probe).

The split is made once (--split-seed); each seed then draws the same per-class cap as
`compare_recipes.py` does (`limit_per_class(..., seed)`), so the rows of the two scripts cover the
same clips for the same seed and can share one table (the CNN recipes' rows come from
`compare_recipes.py`). Prints a Markdown table and writes results.csv, one row per approach and seed.
Pretrained weights come from --pretrained (a folder of `save_pretrained` copies, see
docs/workshop.md), the Hugging Face cache or hub; where none has them the row is computed on a
random stand-in and marked so. Example (docs/results.md's rows):

    python benchmarks/compare_pretrained.py --data-dir ../shared/data/fsdd/recordings \\
        --label-pattern fsdd --split group --features speech --clips-per-class 30 --seeds 0 1 \\
        --out runs/pretrained-fsdd
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import SPEECH, add_dataset_arguments, split_dataset
from torch import nn
from torch.utils.data import DataLoader

from audiocls_utils.baseline import classical_classifier, fit_and_score, learned_numbers, statistics_table
from audiocls_utils.config import FeatureConfig, apply_profile, get_recipe
from audiocls_utils.data import SegmentDataset, class_names, limit_per_class
from audiocls_utils.devices import pick_device
from audiocls_utils.engine.experiment.cache import FeatureCache
from audiocls_utils.features import feature_stats
from audiocls_utils.files import write_csv
from audiocls_utils.metrics import classification_metrics
from audiocls_utils.models import create_model, imagenet_weights_available
from audiocls_utils.pretrained import (
    clip_embeddings,
    count_all_parameters,
    embed_clips,
    load_pretrained,
    zero_shot,
)
from audiocls_utils.train import seed_everything

APPROACHES = ("statistics-logistic", "statistics-svm", "resnet18-probe", "ast-probe",
              "clap-zero-shot", "clap-probe", "hubert-probe")
WINDOW_SECONDS = {"ast": 10.24, "clap": 10.0, "hubert": 10.0}


def score(approach: str, classifier, features: dict[str, np.ndarray], targets: dict[str, np.ndarray],
          classes: list[str], seconds: float, total: int, weights: str) -> dict:
    """Fit `classifier` on the training features, score the test ones; return one result row."""
    scores = fit_and_score(classifier, (features["train"], targets["train"]),
                           (features["test"], targets["test"]), classes)
    return {"approach": approach, "test_accuracy": scores["accuracy"], "test_macro_f1": scores["macro_f1"],
            "test_clips": scores["num_clips"], "seconds": round(seconds + scores["seconds"], 2),
            "trained": learned_numbers(classifier), "total": total + learned_numbers(classifier),
            "weights": weights}


def run_seed(manifest: pd.DataFrame, feature: FeatureConfig, approaches: list[str], pretrained: str | None,
             profile: str) -> list[dict]:
    """Run every approach on one draw of the clips; return the result rows."""
    classes = class_names(manifest)
    splits = {name: manifest[manifest["split"] == name] for name in ("train", "val", "test")}
    targets = {name: np.array([classes.index(label) for label in part["label"]])
               for name, part in splits.items()}
    rows = []
    started = time.perf_counter()
    log_mels = {name: FeatureCache().log_mels(part["path"].tolist(), feature, progress=False)
                for name, part in splits.items()}
    log_mel_seconds = time.perf_counter() - started
    if any(a.startswith("statistics") for a in approaches):
        started = time.perf_counter()
        statistics = {name: statistics_table(log_mels[name]) for name in ("train", "test")}
        seconds = log_mel_seconds + time.perf_counter() - started
        for kind in ("logistic", "svm"):
            if f"statistics-{kind}" in approaches:
                rows.append(score(f"statistics-{kind}", classical_classifier(kind), statistics, targets,
                                  classes, seconds, 0, "none"))
    if "resnet18-probe" in approaches:
        rows.append(resnet_probe(log_mels, targets, classes, feature, profile, log_mel_seconds))
    for kind in ("ast", "clap", "hubert"):
        wanted = [a for a in approaches if a.startswith(f"{kind}-")]
        if not wanted:
            continue
        model, processor, source = load_pretrained(kind, pretrained, pick_device())
        embeddings, seconds = {}, {}
        for name in ("train", "val", "test") if "clap-zero-shot" in wanted else ("train", "test"):
            started = time.perf_counter()
            embeddings[name] = clip_embeddings(kind, model, processor, splits[name]["path"].tolist(),
                                               WINDOW_SECONDS[kind])
            seconds[name] = time.perf_counter() - started
        if f"{kind}-probe" in wanted:
            features = {name: e.numpy() for name, e in embeddings.items()}
            rows.append(score(f"{kind}-probe", classical_classifier("logistic"), features, targets, classes,
                              seconds["train"] + seconds["test"], count_all_parameters(model),
                              source.description))
        if "clap-zero-shot" in wanted:
            rows.append(clap_zero_shot(model, processor, embeddings, targets, classes, seconds, source))
    return rows


def resnet_probe(log_mels: dict, targets: dict, classes: list[str], feature: FeatureConfig, profile: str,
                 log_mel_seconds: float) -> dict:
    """Embed every window with a frozen ResNet18 (chapter 03's input) and fit the linear probe."""
    recipe = apply_profile(get_recipe("baseline"), profile)
    segment_seconds = min(recipe.segment_seconds, 1.0) if feature == SPEECH else recipe.segment_seconds
    device = pick_device()
    started = time.perf_counter()
    mean, std = feature_stats(log_mels["train"])
    num_frames = feature.seconds_to_frames(segment_seconds)
    imagenet = imagenet_weights_available(recipe.model, recipe.pretrained)  # one line if not
    seed_everything(0)
    model = create_model(recipe.model, len(classes), recipe.image_size, mean, std,
                         "yes" if imagenet else "no")
    model[1].fc = nn.Identity()
    model.requires_grad_(False)
    model = model.to(device)
    features = {}
    for name in ("train", "test"):
        windows = SegmentDataset(log_mels[name], list(targets[name]), num_frames, train=False,
                                 hop_frames=num_frames // 2)
        features[name] = embed_clips(model, DataLoader(windows, batch_size=32), device).numpy()
    return score("resnet18-probe", classical_classifier("logistic"), features, targets, classes,
                 log_mel_seconds + time.perf_counter() - started, count_all_parameters(model),
                 "ImageNet" if imagenet else "random initialization")


def clap_zero_shot(model, processor, embeddings: dict, targets: dict, classes: list[str], seconds: dict,
                   source) -> dict:  # noqa: ANN001
    """Choose CLAP's template on the validation clips, then score the test clips once."""
    templates = ["{}", "This is a sound of {}.", "This is {} music."]
    started = time.perf_counter()
    val = [classification_metrics(targets["val"], zero_shot(model, processor, embeddings["val"], classes,
                                                            t).argmax(dim=1).tolist(), classes)["accuracy"]
           for t in templates]
    template = templates[int(np.argmax(val))]
    test = classification_metrics(targets["test"], zero_shot(model, processor, embeddings["test"], classes,
                                                             template).argmax(dim=1).tolist(), classes)
    return {"approach": f"clap-zero-shot {template!r}", "test_accuracy": test["accuracy"],
            "test_macro_f1": test["macro_f1"], "test_clips": test["num_clips"],
            "seconds": round(seconds["val"] + seconds["test"] + time.perf_counter() - started, 2),
            "trained": 0, "total": count_all_parameters(model), "weights": source.description}


def summarize(results: pd.DataFrame) -> str:
    """Return a Markdown table: mean and spread of each figure per approach."""
    lines = ["| approach | seeds | test accuracy | test macro-F1 | seconds | trained numbers | weights |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for approach, runs in results.groupby("approach", sort=False):
        spread = (lambda s: f" ± {s.std(ddof=0):.3f}") if len(runs) > 1 else (lambda s: "")
        lines.append(f"| {approach} | {', '.join(map(str, runs['seed']))} | "
                     f"{runs['test_accuracy'].mean():.3f}{spread(runs['test_accuracy'])} | "
                     f"{runs['test_macro_f1'].mean():.3f}{spread(runs['test_macro_f1'])} | "
                     f"{runs['seconds'].mean():.1f} | {int(runs['trained'].mean()):,} | "
                     f"{runs['weights'].iloc[0]} |")
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, run every approach for every seed, print and save the results."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="each seed draws the per-class cap as compare_recipes.py does")
    parser.add_argument("--features", default="music", choices=["music", "speech"],
                        help="speech: 8 kHz STFT settings for spoken words (FSDD)")
    parser.add_argument("--clips-per-class", type=int, default=None)
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "full"],
                        help="the ResNet18 probe's image and segment size, as chapter 03's")
    parser.add_argument("--approaches", nargs="+", default=list(APPROACHES), choices=APPROACHES)
    parser.add_argument("--pretrained", default=None, help="a folder of save_pretrained copies")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    feature = SPEECH if args.features == "speech" else FeatureConfig()
    manifest = split_dataset(args)
    results = []
    for seed in args.seeds:
        clips = limit_per_class(manifest, args.clips_per_class, seed=seed)
        for row in run_seed(clips, feature, args.approaches, args.pretrained, args.profile):
            results.append({**row, "seed": seed})
            print(f"==> {row['approach']} seed {seed}: test accuracy {row['test_accuracy']:.3f} "
                  f"({row['test_clips']} clips) in {row['seconds']:.1f} s", flush=True)
            write_csv(pd.DataFrame(results), args.out / "results.csv")  # partial results survive
    print(summarize(pd.DataFrame(results)))


if __name__ == "__main__":
    main()
