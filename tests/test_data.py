"""Manifests and splits: junk skipped, bad clips named, one label map, no leakage; the segment
dataset and the runner's reproducible crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import tone, write_wav
from torch.utils.data import DataLoader

from audiocls_utils.data import (
    SegmentDataset,
    build_manifest,
    check_splits,
    class_names,
    find_data_root,
    limit_per_class,
    load_manifest,
    make_splits,
    save_manifest,
    split_by_group,
    split_loaders,
    split_random,
)
from audiocls_utils.engine.experiment.runner import (
    SampledSegments,
    SegmentBatch,
    SegmentSampler,
    collate_segments,
)
from audiocls_utils.errors import AudioclsError


def _messy_dataset(root: Path) -> Path:
    """Write a class-folder dataset with every kind of junk and bad clip beside good ones."""
    for label in ("blues", "jazz"):
        for index in range(5):
            write_wav(root / label / f"{label}.{index:05d}.wav",
                      tone(200.0 + 100 * index + 50 * (label == "jazz"), 0.5))
    write_wav(root / "blues" / "stereo.wav", np.stack([tone(300, 0.5), tone(500, 0.5)], 1))
    write_wav(root / "blues" / "rate8k.wav", tone(300, 0.5, 8000), 8000)
    write_wav(root / "jazz" / "rate44k.wav", tone(300, 0.5, 44100), 44100)
    write_wav(root / "jazz" / "silent.wav", np.zeros(11025, np.float32))
    (root / "jazz" / "empty.wav").write_bytes(b"")
    (root / "jazz" / "fake.wav").write_text("not audio at all\n" * 10)
    (root / "jazz" / "jazz.00054.wav").write_bytes(b"RIFF....WAVE")  # the known-corrupt one
    (root / "blues" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "blues" / "._blues.00000.wav").write_bytes(b"\0\5\26\7")  # macOS resource fork
    (root / "blues.mf").write_text("blues/blues.00000.wav\tblues\n")
    (root / "README.txt").write_text("about this data")
    (root / "jazz" / "cover.png").write_bytes(b"\x89PNG")
    return root


def test_manifest_skips_junk_and_names_each_bad_clip(tmp_path: Path) -> None:
    manifest, excluded = build_manifest(_messy_dataset(tmp_path / "d"), progress=False)
    assert sorted(manifest["label"].unique()) == ["blues", "jazz"]
    assert len(manifest) == 13  # 10 + stereo + 8 kHz + 44.1 kHz
    reasons = {Path(item.path).name: item.reason for item in excluded}
    assert set(reasons) == {"silent.wav", "empty.wav", "fake.wav", "jazz.00054.wav"}
    assert "silence" in reasons["silent.wav"]
    assert "empty" in reasons["empty.wav"]
    assert "decode" in reasons["fake.wav"]
    # Excluded because it does not decode; its name only adds what is known about it.
    assert reasons["jazz.00054.wav"].startswith("cannot decode audio")
    assert "known corruption of GTZAN's Kaggle copy" in reasons["jazz.00054.wav"]
    rows = manifest.set_index(manifest["path"].map(lambda p: Path(p).name))
    assert rows.loc["stereo.wav", "channels"] == 2
    assert rows.loc["rate8k.wav", "sample_rate"] == 8000
    assert rows.loc["rate44k.wav", "sample_rate"] == 44100
    assert rows.loc["blues.00000.wav", "duration"] == pytest.approx(0.5)


def test_a_jazz_00054_that_decodes_is_kept(tmp_path: Path) -> None:
    # The original archive's jazz.00054.wav is fine: only the Kaggle copy's is corrupt.
    for index in range(53, 56):
        write_wav(tmp_path / "jazz" / f"jazz.{index:05d}.wav", tone(300.0 + index, 0.5))
    manifest, excluded = build_manifest(tmp_path, progress=False)
    assert excluded == [] and len(manifest) == 3
    assert manifest["path"].str.endswith("jazz.00054.wav").any()


def _similar_labels(root: Path) -> Path:
    """Write 8 clips of `three` and 1 of `tree`: two real classes whose names are close."""
    for label, count in (("three", 8), ("tree", 1)):
        for index in range(count):
            write_wav(root / label / f"{label}{index}.wav",
                      tone(300.0 + 50 * index + 25 * (label == "tree"), 0.2))
    return root


def test_similar_labels_stop_with_the_override_named(tmp_path: Path) -> None:
    with pytest.raises(AudioclsError, match=r"'tree' .*typo of 'three'.*--allow-similar-labels"):
        build_manifest(_similar_labels(tmp_path), progress=False)


def test_similar_labels_are_kept_when_allowed(tmp_path: Path) -> None:
    manifest, _ = build_manifest(_similar_labels(tmp_path), progress=False,
                                 allow_similar_labels=True)
    assert manifest["label"].value_counts().to_dict() == {"three": 8, "tree": 1}


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AudioclsError, match="does not exist"):
        build_manifest(tmp_path / "nowhere")


def test_folder_without_clips_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(AudioclsError, match="No usable audio clips"):
        build_manifest(tmp_path, progress=False)


@pytest.mark.parametrize("layout", ["genres", "Data/genres_original"])
def test_gtzan_layouts_are_found(tmp_path: Path, layout: str) -> None:
    write_wav(tmp_path / layout / "rock" / "rock.00000.wav", tone(300, 0.2))
    (tmp_path / "Data" / "features_30_sec.csv").parent.mkdir(exist_ok=True)
    (tmp_path / "Data" / "features_30_sec.csv").write_text("filename,label\n")
    assert find_data_root(tmp_path) == tmp_path / layout
    manifest, _ = build_manifest(tmp_path, progress=False)
    assert manifest["label"].tolist() == ["rock"]


def test_label_pattern_reads_label_and_group_from_file_names(tmp_path: Path) -> None:
    for index, name in enumerate(("3_ann_0.wav", "3_bob_1.wav", "7_ann_2.wav", "notes.wav")):
        write_wav(tmp_path / name, tone(300 + 50 * index, 0.2))
    manifest, _ = build_manifest(tmp_path, label_pattern="fsdd", progress=False)
    assert manifest[["label", "group"]].values.tolist() == [["3", "ann"], ["3", "bob"],
                                                            ["7", "ann"]]


def test_groups_csv_sets_the_group_column(tmp_path: Path) -> None:
    write_wav(tmp_path / "a" / "1.wav", tone(300, 0.2))
    write_wav(tmp_path / "a" / "2.wav", tone(300, 0.2))
    (tmp_path / "groups.csv").write_text("path,group\na/1.wav,artist1\na/2.wav,artist2\n")
    manifest, _ = build_manifest(tmp_path, progress=False)
    assert manifest["group"].tolist() == ["artist1", "artist2"]


def _table(per_class: int, classes: str = "abc", groups: int = 0) -> pd.DataFrame:
    rows = [{"path": f"/{c}/{i}.wav", "label": c, "duration": 1.0,
             "group": f"g{i % groups}" if groups else ""}
            for c in classes for i in range(per_class)]
    return pd.DataFrame(rows)


def test_random_split_is_the_original_recipes_80_20_per_class_with_val_from_the_80() -> None:
    split = split_random(_table(100), seed=42)
    counts = split.groupby(["label", "split"]).size().unstack()
    assert (counts["test"] == 20).all() and (counts["val"] == 10).all()
    assert (counts["train"] == 70).all()
    assert split["split"].equals(split_random(_table(100), seed=42)["split"])
    assert not split["split"].equals(split_random(_table(100), seed=7)["split"])


def test_a_class_with_one_clip_stays_in_training_and_is_reported() -> None:
    table = pd.concat([_table(10, "ab"), _table(1, "z")], ignore_index=True)
    split = split_random(table)
    assert split.loc[split["label"] == "z", "split"].tolist() == ["train"]
    warnings = check_splits(split)
    assert any("['z']" in w and "test" in w for w in warnings)


def test_group_split_keeps_every_group_in_one_split() -> None:
    split = split_by_group(_table(30, groups=6), seed=1)
    assert split.groupby("group")["split"].nunique().max() == 1
    assert set(split["split"]) == {"train", "val", "test"}
    assert check_splits(split) == []


def test_random_split_with_groups_warns_about_leakage() -> None:
    warnings = check_splits(split_random(_table(30, groups=3)))
    assert any("several splits" in w for w in warnings)


def test_group_split_without_groups_says_what_to_add() -> None:
    with pytest.raises(AudioclsError, match="groups.csv"):
        split_by_group(_table(5))


def test_class_missing_from_training_is_an_error() -> None:
    table = _table(4, "ab").assign(split="train")
    table.loc[table["label"] == "b", "split"] = "test"
    with pytest.raises(AudioclsError, match=r"\['b'\] have no training clip"):
        check_splits(table)


def test_class_names_are_one_sorted_list() -> None:
    assert class_names(_table(2, "cab")) == ["a", "b", "c"]


def test_limit_per_class_caps_each_split_and_class() -> None:
    limited = limit_per_class(split_random(_table(50)), 3)
    assert limited.groupby(["split", "label"]).size().max() == 3


def test_manifest_round_trip_and_existing_split(tmp_path: Path, tone_dataset: Path) -> None:
    manifest, _ = build_manifest(tone_dataset, progress=False)
    save_manifest(make_splits(manifest, "random"), tmp_path / "m.csv")
    loaded = make_splits(load_manifest(tmp_path / "m.csv"), "existing")
    assert loaded["split"].value_counts().to_dict() == {"train": 27, "test": 6, "val": 3}
    Path(loaded["path"][0]).unlink()
    with pytest.raises(AudioclsError, match="no longer exist"):
        load_manifest(tmp_path / "m.csv")


def test_segment_dataset_crops_in_training_and_windows_in_evaluation() -> None:
    clips = [torch.arange(20.0).repeat(2, 1), torch.arange(3.0).repeat(2, 1)]
    train = SegmentDataset(clips, [0, 1], num_frames=5, train=True)
    segment, target, clip = train[0]
    assert segment.shape == (2, 5) and target == 0 and clip == 0
    assert torch.equal(segment[0], torch.arange(segment[0, 0], segment[0, 0] + 5))
    evaluation = SegmentDataset(clips, [0, 1], num_frames=5, train=False, hop_frames=5)
    assert len(evaluation) == 5  # 4 windows of the long clip, 1 padded window of the short one
    assert evaluation[4][0][0].tolist() == [0, 1, 2, 0, 0]


def test_group_split_keeps_every_class_when_artists_play_one_genre() -> None:
    table = _table(12, "abcd")
    table["group"] = table["label"] + "-artist" + (table.index % 4).astype(str)
    split = split_by_group(table, seed=0)
    counts = split.groupby(["label", "split"]).size().unstack(fill_value=0)
    assert (counts[["train", "val", "test"]] == [6, 3, 3]).all().all()  # 4 artists of 3 clips
    assert split.groupby("group")["split"].nunique().max() == 1


def test_training_crops_are_random_whole_runs_of_frames() -> None:
    clips = [torch.arange(20.0).repeat(2, 1)]
    train = SegmentDataset(clips, [0], num_frames=5, train=True)
    starts = set()
    for seed in range(40):
        torch.manual_seed(seed)
        segment, _, _ = train[0]
        starts.add(int(segment[0, 0]))
        assert torch.equal(segment, torch.arange(segment[0, 0], segment[0, 0] + 5).repeat(2, 1))
    assert starts <= set(range(16)) and len(starts) > 5  # 16 possible starts, 0..15


def test_split_loaders_shuffle_crops_for_training_and_window_the_others() -> None:
    manifest = pd.DataFrame({"label": ["b", "a", "a", "b", "a"],
                             "split": ["train", "train", "val", "test", "test"]})
    log_mels = [torch.full((2, 12), float(i)) for i in range(5)]  # row i holds i
    loaders = split_loaders(manifest, log_mels, ["a", "b"], num_frames=4, batch_size=8)
    assert set(loaders) == {"train", "val", "test"}
    train = loaders["train"].dataset
    assert train.train and train.targets == [1, 0] and len(train) == 2
    assert [float(m[0, 0]) for m in train.log_mels] == [0.0, 1.0]
    test = loaders["test"].dataset
    assert not test.train and test.targets == [1, 0]
    # Windows of 4 frames, a hop of 2: starts 0, 2, 4, 6, 8 in each 12-frame clip.
    assert test.windows == [(c, s) for c in (0, 1) for s in (0, 2, 4, 6, 8)]
    segments, targets, clips = next(iter(loaders["test"]))
    assert segments.shape == (8, 2, 4) and float(segments[5, 0, 0]) == 4.0
    assert targets.tolist() == [1] * 5 + [0] * 3 and clips.tolist() == [0] * 5 + [1] * 3


def test_sampler_positions_choose_the_crop() -> None:
    clips = [torch.arange(20.0).repeat(2, 1)]
    train = SampledSegments(clips, [0], num_frames=5, train=True)
    # 16 possible starts (0..15): position p starts at floor(p * 16).
    assert [train[(0, p)][0][0, 0].item() for p in (0.0, 0.5, 0.999)] == [0, 8, 15]


def test_a_whole_batch_read_at_once_equals_the_items_collated() -> None:
    clips = [torch.arange(20.0).repeat(2, 1), torch.arange(3.0).repeat(2, 1) - 5,
             torch.arange(9.0).repeat(2, 1) * 2]  # the second is shorter than a segment: padded
    for train in (True, False):
        dataset = SampledSegments(clips, [2, 0, 1], num_frames=5, train=train, hop_frames=3)
        items = ([(c, p) for c in (2, 0, 1) for p in (0.0, 0.37, 0.999)] if train
                 else list(range(len(dataset))))
        batch = dataset.__getitems__(items)
        expected = collate_segments([dataset[item] for item in items])
        assert isinstance(batch, SegmentBatch) and batch.segments.shape == (len(items), 2, 5)
        assert all(torch.equal(x, y) for x, y in zip(batch, expected, strict=True))
        assert collate_segments(batch) is batch  # passed on, not stacked again
    # The short clip's padding is its floor, -5, by hand.
    assert dataset[dataset.windows.index((1, 0))][0][0].tolist() == [-5, -4, -3, -5, -5]


def test_sampler_shares_clips_between_ranks_and_repeats_each_epoch() -> None:
    ranks = [SegmentSampler(10, seed=3, rank=r, world_size=2) for r in (0, 1)]
    first = [list(s) for s in ranks]
    assert [len(items) for items in first] == [5, 5]
    assert sorted(c for items in first for c, _ in items) == list(range(10))
    assert all(0.0 <= p < 1.0 for items in first for _, p in items)
    assert [list(s) for s in ranks] == first  # same epoch, same clips and crops
    for sampler in ranks:
        sampler.set_epoch(1)
    assert [list(s) for s in ranks] != first


def test_crops_and_batches_do_not_depend_on_loader_workers() -> None:
    clips = [torch.arange(30.0).repeat(2, 1) + 100 * i for i in range(6)]
    dataset = SampledSegments(clips, list(range(6)), num_frames=4, train=True)
    batches = []
    for workers in (0, 2):
        sampler = SegmentSampler(6, seed=0)
        loader = DataLoader(dataset, batch_size=3, sampler=sampler, num_workers=workers,
                            persistent_workers=workers > 0, collate_fn=collate_segments)
        epochs = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            epochs.append([batch[0] for batch in loader])
        batches.append(epochs)
    first = [dataset[item] for item in list(SegmentSampler(6, seed=0))[:3]]
    assert torch.equal(batches[0][0][0], torch.stack([segment for segment, _, _ in first]))
    for (serial, parallel) in zip(batches[0], batches[1], strict=True):
        assert all(torch.equal(a, b) for a, b in zip(serial, parallel, strict=True))
    assert not torch.equal(batches[0][0][0], batches[0][1][0])  # a new epoch, new crops


def test_group_split_of_artists_within_genres_reaches_every_class() -> None:
    rows = [{"path": f"/{c}/{a}/{i}.wav", "label": c, "group": f"{c}-artist{a}", "duration": 1.0}
            for c in "abcde" for a in range(4) for i in range(5)]  # 4 artists of 5 clips per class
    split = split_by_group(pd.DataFrame(rows), seed=0)
    assert split.groupby("group")["split"].nunique().max() == 1
    # Per class: the first artist drawn fills test, the next val (each nearer its target than
    # nothing), the other two train.
    counts = split.groupby(["label", "split"]).size().unstack()
    assert counts.to_dict("list") == {"test": [5] * 5, "train": [10] * 5, "val": [5] * 5}
    assert check_splits(split) == []


def test_manifest_cells_a_spreadsheet_would_run_are_escaped_and_read_back(tmp_path: Path) -> None:
    from audiocls_utils.data import build_manifest, load_manifest, save_manifest

    labels = ["=1+1", "+cmd", "-2", "@SUM(A1)", "'quoted", "plain"]
    for i, label in enumerate(labels):  # different tones: identical files would be excluded
        write_wav(tmp_path / "data" / label / "a.wav", tone(300.0 + 50 * i, 1.0))
    manifest, _ = build_manifest(tmp_path / "data")
    save_manifest(manifest, tmp_path / "manifest.csv")
    cells = pd.read_csv(tmp_path / "manifest.csv", dtype=str)["label"]
    assert sorted(cells) == sorted(["'=1+1", "'+cmd", "'-2", "'@SUM(A1)", "''quoted", "plain"])
    assert sorted(load_manifest(tmp_path / "manifest.csv")["label"]) == sorted(labels)


def test_a_groups_file_that_matches_no_clip_is_named_with_an_example_path(tmp_path: Path) -> None:
    from audiocls_utils.data import build_manifest

    for i, label in enumerate(("low", "high")):
        write_wav(tmp_path / label / "a.wav", tone(300.0 + 500 * i, 1.0))
    (tmp_path / "groups.csv").write_text("path,group\ndata/low/a.wav,alice\n")  # wrong prefix
    with pytest.raises(AudioclsError) as error:
        build_manifest(tmp_path, progress=False)
    assert str(error.value) == (
        f"{tmp_path / 'groups.csv'}: none of its 1 path(s) is a clip below {tmp_path} (e.g. "
        "'data/low/a.wav'); its paths are relative to that folder, like 'high/a.wav': fix them")
    (tmp_path / "groups.csv").write_text("path,group\nlow/a.wav,alice\n")  # one right is enough
    manifest, _ = build_manifest(tmp_path, progress=False)
    assert manifest.set_index("label")["group"].to_dict() == {"high": "", "low": "alice"}
