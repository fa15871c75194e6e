"""Check a learner's own dataset before training on it: what is there, what is wrong, what leaks.

Chapter 06 runs `check_dataset` on a folder of class folders or a CSV of paths and labels. It
reuses the manifest's checks (`data.build_manifest`: unreadable, empty and too-short files are
named and left out) and its splits (`data.make_splits`), and adds what a new dataset needs:
silent clips, clips too long to hold, classes too small to split, and near-duplicate clips that
fall into two splits (leakage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from .abstain import SILENCE_DB
from .config import FeatureConfig
from .data import Excluded, build_manifest, check_splits, make_splits
from .errors import AudioclsError
from .features import described_log_mel, too_short_to_frame

MIN_CLIPS = 3  # a class needs one clip in each of train, val and test
MAX_SECONDS = 600.0  # longer clips are left out here: cut them into clips first
ACTIVE_DB = 20.0  # a fingerprint reads the frames at most this far below the loudest
DUPLICATE_SIMILARITY = 0.99  # FSDD: two speakers never reach 0.97; a trimmed copy 0.994


@dataclass
class DatasetReport:
    """What `check_dataset` found: the usable clips with their split, and everything left out."""

    manifest: pd.DataFrame  # one row per usable clip, with `split` and `loudness_db`
    log_mels: list[torch.Tensor]  # one per manifest row, (n_mels, frames)
    config: FeatureConfig  # how the log-Mels were computed
    excluded: list[Excluded] = field(default_factory=list)  # files named and skipped, with why
    small_classes: dict[str, int] = field(default_factory=dict)  # class -> clips, too few: dropped
    duplicates: pd.DataFrame = field(default_factory=pd.DataFrame)  # near-duplicates across splits
    split: str = "random"  # how the split was made: "group" or "random"
    warnings: list[str] = field(default_factory=list)  # `data.check_splits`' notes

    def per_class(self) -> pd.DataFrame:
        """Return one row per class: clips per split, groups, durations and sample rates."""
        manifest = self.manifest
        table = pd.crosstab(manifest["label"], manifest["split"])
        table = table.reindex(columns=[s for s in ("train", "val", "test") if s in table], fill_value=0)
        table.columns.name = None
        table.insert(0, "clips", manifest.groupby("label").size())
        grouped = manifest.groupby("label")
        table["groups"] = grouped["group"].nunique()
        table["min s"] = grouped["duration"].min().round(2)
        table["median s"] = grouped["duration"].median().round(2)
        table["max s"] = grouped["duration"].max().round(2)
        table["sample rates (Hz)"] = grouped["sample_rate"].unique().map(
            lambda rates: ", ".join(str(r) for r in sorted(rates)))
        for label, count in self.small_classes.items():
            table.loc[label, "clips"] = count  # shown, with no split: left out
        return table.fillna(0).astype({c: int for c in ("clips", "groups")})

    def problems(self) -> pd.DataFrame:
        """Return the files left out and why, one row each."""
        return pd.DataFrame([{"path": item.path, "reason": item.reason} for item in self.excluded],
                            columns=["path", "reason"])

    def summary(self) -> list[str]:
        """Return a few lines: what is usable, what was left out, the split, and leakage."""
        manifest = self.manifest
        lines = [f"{len(manifest)} usable clips in {manifest['label'].nunique()} classes, "
                 f"{manifest['duration'].sum() / 60:.1f} min of audio; {len(self.excluded)} "
                 "file(s) left out (see problems())"]
        for label, count in self.small_classes.items():
            lines.append(f"class {label!r} left out: {count} clip(s), fewer than the {MIN_CLIPS} "
                         "a train/val/test split needs")
        groups = manifest["group"].nunique() if self.split == "group" else 0
        lines.append(f"split: {self.split}" + (f" by group ({groups} groups, none in two splits)"
                                               if groups else " per class (no groups given)"))
        lines.extend(f"warning: {w}" for w in self.warnings)
        lines.append(f"{len(self.duplicates)} near-duplicate pair(s) across splits (fingerprint "
                     f"similarity >= {DUPLICATE_SIMILARITY})")
        return lines


def check_dataset(data, label_pattern=None, config=None, split="auto", seed=42,
                  min_clips=MIN_CLIPS, silence_db=SILENCE_DB, max_seconds=MAX_SECONDS,
                  similarity=DUPLICATE_SIMILARITY, progress=False):
    """Check a folder of class folders, or a CSV of paths and labels, and split it.

    `data` is a folder (`<class>/<file>`, or flat files named as `label_pattern` says, e.g.
    "fsdd") or a CSV with columns path,label[,group] (paths relative to the CSV's folder).
    `config` sets the log-Mels computed for the checks (default: `suggest_features`); `split`
    is "group" (needs a group for every clip), "random", or "auto" (group when every clip has
    one). Raises one line when nothing usable remains or fewer than two classes do.
    """
    data = Path(data).expanduser()
    if data.is_file() and data.suffix.lower() == ".csv":
        manifest, excluded = build_manifest(data.parent, labels_csv=data, progress=progress)
    else:
        manifest, excluded = build_manifest(data, label_pattern, progress=progress)
    config = config or suggest_features(manifest)
    keep, log_mels, loudness = [], [], []
    for row in manifest.itertuples():
        problem, log_mel, level = _clip_problem(row, config, silence_db, max_seconds)
        if problem:
            excluded.append(Excluded(row.path, problem))
            continue
        keep.append(row.Index)
        log_mels.append(log_mel)
        loudness.append(level)
    manifest = manifest.loc[keep].assign(loudness_db=loudness).reset_index(drop=True)
    counts = manifest["label"].value_counts()
    small = {label: int(n) for label, n in sorted(counts.items()) if n < min_clips}
    if len(counts) - len(small) < 2:
        usable = sorted(set(counts.index) - set(small))
        raise AudioclsError(
            f"{data}: {len(usable)} class(es) with at least {min_clips} usable clips "
            f"({usable or 'none'}; {len(excluded)} file(s) left out"
            + (f", e.g. {excluded[0]}" if excluded else "")
            + "): a classifier needs two or more classes; add a folder of clips per class")
    if small:
        kept = ~manifest["label"].isin(small)
        log_mels = [m for m, k in zip(log_mels, kept, strict=True) if k]
        manifest = manifest[kept].reset_index(drop=True)
    has_groups = (manifest["group"].fillna("") != "").all()
    method = ("group" if has_groups else "random") if split == "auto" else split
    manifest = make_splits(manifest, method, seed=seed)
    warnings = check_splits(manifest)
    duplicates = near_duplicates(manifest, log_mels, similarity)
    return DatasetReport(manifest, log_mels, config, excluded, small, duplicates, method, warnings)


def _clip_problem(row, config, silence_db, max_seconds):
    """Return (why a manifest clip cannot be used, else None; its log-Mel; its loudness in dBFS)."""
    if row.duration > max_seconds:
        return (f"{row.duration / 60:.0f} min long, over the {max_seconds / 60:.0f} min a clip may "
                "be here: cut it into clips (e.g. 30 s each) and check again"), None, None
    log_mel, info = described_log_mel(row.path, config, torch.float32)
    if log_mel is None:
        return too_short_to_frame(config), None, None
    if silence_db is not None and info.loudness_db < silence_db:
        return (f"silent: {info.loudness_db:.0f} dBFS, below the {silence_db:.0f} dBFS gate; check "
                "the recording level or delete it"), None, None
    return None, log_mel, info.loudness_db


def suggest_features(manifest):
    """Return log-Mel settings for a dataset: its most common sample rate (at most 22050 Hz),
    windows of about 32 ms with a quarter hop, and 40 Mel bands at 8 kHz or less, else 64."""
    rate = int(min(22050, manifest["sample_rate"].mode().iloc[0]))
    n_fft = 2 ** round(math.log2(0.032 * rate))  # a power of two near 32 ms
    return FeatureConfig(sample_rate=rate, n_fft=n_fft, hop_length=n_fft // 4,
                         n_mels=40 if rate <= 8000 else 64)


def fingerprint(log_mel):
    """Return a clip's fingerprint: each Mel band's mean and spread over time, level removed.

    Only frames within ACTIVE_DB of the loudest count, so silence added or cut around the sound
    changes little. Cheap (a number pair per band) and blind to a change of volume (the mean
    level is subtracted): a re-encoded, louder, trimmed or padded copy of a recording keeps its
    fingerprint; added noise does not, and two takes of a word by one speaker usually differ.
    """
    log_mel = torch.as_tensor(log_mel, dtype=torch.float32)
    level = log_mel.mean(dim=0)  # (frames,) each frame's mean level, dB
    active = log_mel[:, level >= level.max() - ACTIVE_DB]  # the sound, not the pauses around it
    mean, spread = active.mean(dim=1), active.std(dim=1, correction=0)  # (n_mels,) each
    vector = torch.cat([mean - mean.mean(), spread - spread.mean()])
    return vector / vector.norm().clamp_min(1e-8)  # unit length: a dot product is the cosine


def near_duplicates(manifest, log_mels, similarity=DUPLICATE_SIMILARITY):
    """Return pairs of clips in different splits whose fingerprints' cosine is >= `similarity`."""
    columns = ["first", "second", "splits", "labels", "similarity"]
    if len(log_mels) < 2:
        return pd.DataFrame(columns=columns)
    prints = torch.stack([fingerprint(m) for m in log_mels])  # (clips, 2 * n_mels)
    cosine = prints @ prints.T
    splits = manifest["split"].to_numpy()
    codes = torch.as_tensor(pd.factorize(splits)[0])
    other_split = codes[:, None] != codes[None, :]
    upper = torch.ones_like(cosine, dtype=torch.bool).triu(diagonal=1)
    first, second = torch.nonzero((cosine >= similarity) & other_split & upper, as_tuple=True)
    rows = [{"first": manifest["path"].iloc[int(i)], "second": manifest["path"].iloc[int(j)],
             "splits": f"{splits[i]}/{splits[j]}",
             "labels": f"{manifest['label'].iloc[int(i)]}/{manifest['label'].iloc[int(j)]}",
             "similarity": round(float(cosine[i, j]), 4)} for i, j in zip(first, second, strict=True)]
    return pd.DataFrame(rows, columns=columns).sort_values("similarity", ascending=False,
                                                           ignore_index=True)
