"""What the comparison scripts share: the speech feature settings and the dataset arguments."""

from __future__ import annotations

import argparse

import pandas as pd

from audiocls_utils.config import FeatureConfig
from audiocls_utils.data import build_manifest, make_splits

# Speech at 8 kHz (FSDD): a 64 ms window and a 16 ms hop suit words better than music settings.
SPEECH = FeatureConfig(sample_rate=8000, n_fft=512, hop_length=128, n_mels=64)


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments that name the dataset and how it is split."""
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--label-pattern", default=None)
    parser.add_argument("--split", default="group", choices=["random", "group", "filtered"])
    parser.add_argument("--split-seed", type=int, default=42)


def split_dataset(args: argparse.Namespace) -> pd.DataFrame:
    """Build the manifest of --data-dir and split it once (--split, --split-seed); say what it holds."""
    manifest, excluded = build_manifest(args.data_dir, args.label_pattern, progress=False)
    manifest = make_splits(manifest, args.split, seed=args.split_seed)
    print(f"{len(manifest)} clips ({len(excluded)} excluded); split {args.split} "
          f"(seed {args.split_seed}): {manifest['split'].value_counts().to_dict()}")
    return manifest
