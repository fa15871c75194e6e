"""The feature cache: hits, misses on any change, corrupt or altered entries rebuilt, concurrent
fills."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import time
import warnings
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import REPO, tone, write_wav

from audiocls_utils.config import FeatureConfig, apply_profile, get_recipe
from audiocls_utils.data import SegmentDataset, build_manifest, make_splits
from audiocls_utils.engine.experiment import cache as cache_module
from audiocls_utils.engine.experiment.cache import (
    CACHE_VERSION,
    CachedLogMel,
    FeatureCache,
    default_cache_dir,
)
from audiocls_utils.engine.experiment.runner import compute_split_features, run_experiment
from audiocls_utils.features import LogMel, extract_log_mels, read_segment

CONFIG = FeatureConfig(n_fft=512, hop_length=128, n_mels=32)


def _clips(folder: Path, seconds: tuple[float, ...] = (0.5, 0.8, 0.3)) -> list[Path]:
    """Write one tone per length (different pitches) and return the paths."""
    return [write_wav(folder / f"clip{i}.wav", tone(300.0 * (i + 1), s))
            for i, s in enumerate(seconds)]


def _computed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the clips the cache computes (rather than reads) from now on."""
    counts: list[int] = []
    original = cache_module.iter_log_mels

    def counting(paths, *args, **kwargs):  # noqa: ANN001, ANN202
        counts.append(len(paths))
        return original(paths, *args, **kwargs)

    monkeypatch.setattr(cache_module, "iter_log_mels", counting)
    return counts


def _full(entry: CachedLogMel) -> torch.Tensor:
    return torch.from_numpy(entry[...])


def test_a_second_lookup_reads_what_the_first_computed(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _clips(tmp_path / "audio")
    computed = _computed(monkeypatch)
    cache = FeatureCache(tmp_path / "cache")
    first = cache.log_mels(paths, CONFIG, progress=False)
    second = FeatureCache(tmp_path / "cache").log_mels(paths, CONFIG, progress=False)
    assert computed == [3]  # all three the first time, none the second
    assert all(e.path.is_relative_to(tmp_path / "cache" / f"v{CACHE_VERSION}") for e in first)
    in_memory = extract_log_mels(paths, CONFIG, progress=False)
    for a, b, expected in zip(first, second, in_memory, strict=True):
        assert a.path == b.path and a.shape == tuple(expected.shape)
        assert torch.equal(_full(b), expected)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 3


def test_files_with_the_same_content_share_one_entry(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    [path] = _clips(tmp_path / "a", (0.4,))
    copy = tmp_path / "b" / "copy.wav"
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    computed = _computed(monkeypatch)
    first, second = FeatureCache(tmp_path / "cache").log_mels([path, copy], CONFIG, progress=False)
    assert computed == [1] and first.path == second.path


def test_a_changed_file_misses(tmp_path: Path) -> None:
    [path] = _clips(tmp_path, (0.5,))
    cache = FeatureCache(tmp_path / "cache")
    [before] = cache.log_mels([path], CONFIG, progress=False)
    write_wav(path, tone(2000.0, 0.5))  # same length, same size, other content
    [after] = cache.log_mels([path], CONFIG, progress=False)
    assert after.path != before.path
    expected = LogMel(CONFIG)(torch.from_numpy(tone(2000.0, 0.5)))
    assert torch.allclose(_full(after).float(), expected, atol=0.1)  # float16 + 16-bit PCM


def test_the_stat_index_spares_rehashing_and_still_sees_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [path] = _clips(tmp_path, (0.5,))
    hashed: list[Path] = []
    original = cache_module.file_sha256
    monkeypatch.setattr(cache_module, "file_sha256", lambda p: hashed.append(p) or original(p))
    cache = FeatureCache(tmp_path / "cache")
    digest = cache.content_hash(path)
    assert cache.content_hash(path) == digest and len(hashed) == 2  # too fresh to trust its stat

    monkeypatch.setattr(cache_module, "SETTLE_SECONDS", 0.0)
    assert cache.content_hash(path) == digest and len(hashed) == 3  # hashed, now indexed
    assert cache.content_hash(path) == digest and len(hashed) == 3  # read from the index

    stat = path.stat()
    time.sleep(0.05)  # past the filesystem clock's tick, so that ctime moves
    write_wav(path, tone(2000.0, 0.5))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, mtime put back
    assert path.stat().st_size == stat.st_size and path.stat().st_ctime_ns != stat.st_ctime_ns
    assert cache.content_hash(path) == original(path) != digest


def test_a_changed_config_misses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _clips(tmp_path / "audio")
    cache = FeatureCache(tmp_path / "cache")
    computed = _computed(monkeypatch)
    narrow = cache.log_mels(paths, CONFIG, progress=False)
    wide = cache.log_mels(paths, replace(CONFIG, n_mels=48), progress=False)
    raw = cache.log_mels(paths, replace(CONFIG, to_db=False, top_db=None), progress=False)
    assert computed == [3, 3, 3]
    assert narrow[0].shape[0] == 32 and wide[0].shape[0] == 48
    assert narrow[0].dtype == np.float16 and raw[0].dtype == np.float32  # power overflows float16
    assert len({e.path.parent.parent for e in narrow + wide + raw}) == 3


def test_raw_power_of_a_loud_clip_is_kept_exactly(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "loud.wav", tone(440.0, 0.5, amplitude=0.99))
    config = FeatureConfig(n_mels=32, to_db=False, top_db=None)  # the seed's n_fft of 2048
    [entry] = FeatureCache(tmp_path / "cache").log_mels([path], config, progress=False)
    values = _full(entry)
    assert values.max() > 65504  # float16 would have stored inf
    assert torch.isfinite(values).all()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong shape"])
def test_a_corrupt_entry_is_named_and_rebuilt(tmp_path: Path, damage: str) -> None:
    paths = _clips(tmp_path / "audio")
    cache = FeatureCache(tmp_path / "cache")
    good = [_full(e) for e in cache.log_mels(paths, CONFIG, progress=False)]
    entry = cache.log_mels(paths, CONFIG, progress=False)[1].path
    if damage == "truncate":
        entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    elif damage == "garbage":
        entry.write_bytes(b"not an array at all")
    else:
        np.save(entry, np.zeros((5, 7), np.float16))
    with pytest.warns(RuntimeWarning, match=f"{entry.name}.*damaged") as caught:
        rebuilt = cache.log_mels(paths, CONFIG, progress=False)
    assert len(caught) == 1
    assert all(torch.equal(_full(e), g) for e, g in zip(rebuilt, good, strict=True))
    assert np.load(entry).shape == tuple(good[1].shape)  # written again, whole


@pytest.mark.parametrize("where", ["data", "checksum"])
def test_an_entry_changed_in_place_is_named_and_rebuilt(tmp_path: Path, where: str) -> None:
    # Same size, a few bytes changed (a bad sector, a stray write): its header still reads well.
    paths = _clips(tmp_path / "audio")
    cache = FeatureCache(tmp_path / "cache")
    good = [_full(e) for e in cache.log_mels(paths, CONFIG, progress=False)]
    entry = cache.log_mels(paths, CONFIG, progress=False)[2]
    data = bytearray(entry.path.read_bytes())
    position = entry.offset + 10 if where == "data" else len(data) - 1
    data[position] ^= 0xFF
    entry.path.write_bytes(bytes(data))
    assert entry.path.stat().st_size == len(data)
    if where == "data":
        assert not torch.equal(_full(entry), good[2])  # other numbers, which nothing else reveals
    with pytest.warns(RuntimeWarning, match=f"{entry.path.name} is damaged.*checksum") as caught:
        rebuilt = cache.log_mels(paths, CONFIG, progress=False)
    assert len(caught) == 1
    assert all(torch.equal(_full(e), g) for e, g in zip(rebuilt, good, strict=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt whole: read again without a word
        cache.log_mels(paths, CONFIG, progress=False)


def test_an_entry_ends_with_the_crc32_of_its_data(tmp_path: Path) -> None:
    [path] = _clips(tmp_path, (0.5,))
    [entry] = FeatureCache(tmp_path / "cache").log_mels([path], CONFIG, progress=False)
    raw = entry.path.read_bytes()
    array = np.load(entry.path)  # numpy reads the array and ignores the trailer
    assert raw[entry.offset: entry.offset + array.nbytes] == array.tobytes()
    assert raw[entry.offset + array.nbytes:] == b"crc3" + zlib.crc32(array.tobytes()).to_bytes(
        4, "little")


@pytest.mark.slow
def test_two_processes_filling_one_cache_write_identical_readable_entries(tmp_path: Path) -> None:
    paths = _clips(tmp_path / "audio", tuple(0.3 + 0.1 * i for i in range(8)))
    script = textwrap.dedent(f"""
        import sys, time
        from audiocls_utils.engine.experiment.cache import FeatureCache
        from audiocls_utils.config import FeatureConfig
        paths = {[str(p) for p in paths]!r}
        while time.time() < float(sys.argv[1]):  # start together
            time.sleep(0.001)
        FeatureCache({str(tmp_path / "cache")!r}).log_mels(
            paths, FeatureConfig(n_fft=512, hop_length=128, n_mels=32), num_workers=0,
            progress=False)
    """)
    start = str(time.time() + 8)  # both have imported torch by then
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    workers = [subprocess.Popen([sys.executable, "-c", script, start], env=env,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    entries = FeatureCache(tmp_path / "cache").log_mels(paths, CONFIG, progress=False)
    expected = extract_log_mels(paths, CONFIG, progress=False)
    assert all(torch.equal(_full(e), x) for e, x in zip(entries, expected, strict=True))
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # no temporary file left behind


def test_crops_from_the_cache_equal_crops_in_memory(tmp_path: Path) -> None:
    paths = _clips(tmp_path / "audio", (0.5, 1.0, 0.2))  # the last is shorter than a segment
    entries = FeatureCache(tmp_path / "cache").log_mels(paths, CONFIG, progress=False)
    tensors = extract_log_mels(paths, CONFIG, progress=False)
    num_frames = CONFIG.seconds_to_frames(0.4)
    for train in (False, True):
        on_disk = SegmentDataset(entries, [0, 1, 2], num_frames, train=train, hop_frames=20)
        in_memory = SegmentDataset(tensors, [0, 1, 2], num_frames, train=train, hop_frames=20)
        assert len(on_disk) == len(in_memory) == (3 if train else len(in_memory.windows))
        for item in [*range(len(in_memory)), *range(len(in_memory))]:
            torch.manual_seed(item)  # training crops: the same random start for both
            a, target_a, clip_a = on_disk[item]
            torch.manual_seed(item)
            b, target_b, clip_b = in_memory[item]
            assert a.shape == (32, num_frames) and torch.equal(a, b)
            assert (target_a, clip_a) == (target_b, clip_b)
    # Read straight into a batch row (from the entry's memory map): the same numbers.
    for clip, start in ((0, 3), (2, 0), (1, 60)):
        rows = torch.zeros(2, 32, num_frames, dtype=torch.float16)
        read_segment(entries[clip], start, num_frames, rows[0])
        read_segment(tensors[clip], start, num_frames, rows[1])
        assert torch.equal(rows[0], rows[1])


def test_split_features_from_the_cache_equal_those_computed_in_ram(tmp_path: Path) -> None:
    paths = _clips(tmp_path / "audio", (0.5, 0.6, 0.7, 0.8))
    manifest = pd.DataFrame({"path": [str(p) for p in paths], "label": ["a", "b", "a", "b"],
                             "split": ["train", "train", "val", "test"]})
    cached = compute_split_features(manifest, ["a", "b"], CONFIG, torch.device("cpu"), False, 0,
                                    FeatureCache(tmp_path / "cache"))
    in_ram = compute_split_features(manifest, ["a", "b"], CONFIG, torch.device("cpu"), False, 0)
    assert set(cached) == set(in_ram) == {"train", "val", "test"}
    for split, features in cached.items():
        assert features.targets == in_ram[split].targets and features.paths == in_ram[split].paths
        for entry, tensor in zip(features.log_mels, in_ram[split].log_mels, strict=True):
            assert isinstance(entry, CachedLogMel) and torch.equal(_full(entry), tensor)


def test_default_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setenv("AUDIOCLS_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("AUDIOCLS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "audiocls" / "features"


@pytest.mark.slow
def test_a_run_after_entries_changed_in_place_equals_a_run_on_a_clean_cache(
        tmp_path: Path, tone_dataset: Path) -> None:
    # Before: entries altered in place (same size) were used silently; test accuracy fell.
    manifest = make_splits(build_manifest(tone_dataset, progress=False)[0], "random")
    recipe = replace(apply_profile(get_recipe("baseline"), "smoke"), epochs=1,
                     clips_per_class=None, batch_size=8)
    cache = FeatureCache(tmp_path / "cache")

    def train(name: str):  # noqa: ANN202
        return run_experiment(manifest, recipe, tmp_path / name, seed=0, progress=False,
                              tracking_mode="disabled", cache=cache, num_workers=0)

    clean = train("clean")
    clips = manifest.loc[manifest["split"] != "val", "path"].tolist()[::4]  # train and test clips
    damaged = cache.log_mels(clips, recipe.feature, progress=False)
    for entry in damaged:  # zeros over the data: the header and the size stay right
        data = bytearray(entry.path.read_bytes())
        data[entry.offset: entry.offset + 2 * math.prod(entry.shape)] = bytes(
            2 * math.prod(entry.shape))
        entry.path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="is damaged") as caught:
        again = train("again")
    assert sorted(str(w.message).split()[3] for w in caught) == sorted(
        str(e.path) for e in damaged)  # each named once
    assert again.history.drop(columns="seconds").equals(clean.history.drop(columns="seconds"))
    assert again.metrics["test"] == clean.metrics["test"] and again.metrics["val"] == clean.metrics["val"]
