"""Keep log-Mel features on disk: computed once per (clip content, feature config), then memory-mapped.

Each entry is one `.npy` file (float16 for dB features, see `features.storage_dtype`), followed
by an 8-byte trailer holding the CRC-32 of the array's bytes (`np.load` ignores it):

    <root>/v<CACHE_VERSION>/<FeatureConfig.key()>/<sha[:2]>/<sha>.npy   sha: SHA-256 of the audio file's bytes

so an entry is found again from any path, run or notebook, and a changed file or a changed
config simply misses. Entries are read through short-lived memory maps: only the frames asked
for are copied into RAM, so datasets larger than memory stream from disk.

Hashing a 30 s clip costs about as much as decoding it, so `<root>/index/` remembers each file's
hash under its (path, size, mtime, ctime, inode). A file is indexed only once it is a couple of
seconds old: a file rewritten within one tick of the filesystem clock could otherwise keep its
stat values (git's "racy clean" problem), and is hashed again instead.

Writes go to a temporary file in the same folder, then `os.replace`: two processes filling the
cache at once (DDP ranks, two notebooks) each write whole, identical entries. An entry that
cannot be read (truncated by a power cut, overwritten by hand) is reported in one warning,
deleted and computed again; so is one whose bytes changed in place (a bad disk sector, a stray
write), which its checksum reveals: every entry is read whole and checked once per run, which
costs far less than decoding the clip again.

Root: the `root` argument, else $AUDIOCLS_CACHE, else $XDG_CACHE_HOME/audiocls/features, else
~/.cache/audiocls/features. Delete the folder at any time to reclaim the space.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
import warnings
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ...config import FeatureConfig
from ...errors import AudioclsError
from ...features import iter_log_mels, storage_dtype
from ...files import file_sha256, write_bytes

# Bump when the feature code changes what it computes: old entries then miss.
# 3: torchaudio's Spectrogram, MelScale and AmplitudeToDB (values within ~1e-6 of version 2's).
# 4: each entry ends with a checksum of its data.
CACHE_VERSION = 4
CHECKSUM_MAGIC = b"crc3"  # the trailer: these 4 bytes, then the CRC-32 of the data, little-endian
TRAILER_BYTES = 8
SETTLE_SECONDS = 2.0  # files changed more recently than this are hashed, not looked up by stat


def default_cache_dir() -> Path:
    """Return $AUDIOCLS_CACHE, else $XDG_CACHE_HOME/audiocls/features, else ~/.cache/..."""
    if os.environ.get("AUDIOCLS_CACHE"):
        return Path(os.environ["AUDIOCLS_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base / "audiocls" / "features"


def checksum_trailer(data: bytes | np.ndarray) -> bytes:
    """Return the trailer that ends an entry: the magic bytes and the CRC-32 of `data`."""
    return CHECKSUM_MAGIC + zlib.crc32(data).to_bytes(4, "little")


def read_entry_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Return the shape, dtype and data offset of a cache entry, after checking its checksum.

    Raise ValueError when its size disagrees with its header or its bytes with its checksum.
    """
    with open(path, "rb") as file:
        version = np.lib.format.read_magic(file)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran_order, dtype = read_header(file)
        offset = file.tell()
        nbytes = math.prod(shape) * dtype.itemsize
        actual = os.fstat(file.fileno()).st_size
        if fortran_order:
            raise ValueError("the array is stored in Fortran order, not C order")
        if actual != offset + nbytes + TRAILER_BYTES:
            raise ValueError(f"{actual} bytes where its header announces "
                             f"{offset + nbytes + TRAILER_BYTES}")
        crc, remaining = 0, nbytes
        while remaining and (chunk := file.read(min(1 << 20, remaining))):  # 1 MiB at a time
            crc, remaining = zlib.crc32(chunk, crc), remaining - len(chunk)
        trailer = file.read(TRAILER_BYTES)
    if trailer != CHECKSUM_MAGIC + crc.to_bytes(4, "little"):
        raise ValueError("its bytes no longer match their checksum: changed since it was written")
    return tuple(shape), dtype, offset


class CachedLogMel:
    """One cached log-Mel (n_mels, frames) on disk; slicing it copies only that slice into memory."""

    __slots__ = ("path", "shape", "dtype", "offset")

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype, offset: int) -> None:
        self.path = path
        self.shape = shape
        self.dtype = dtype
        self.offset = offset  # where the data starts, after the .npy header

    def __getitem__(self, key: Any) -> np.ndarray:
        """Return `array[key]` as an in-memory copy; the map is closed again at once."""
        return np.array(self._map()[key])

    def copy_into(self, out: np.ndarray, key: Any) -> None:
        """Copy `array[key]` into `out` (of its shape), with no copy in between."""
        np.copyto(out, self._map()[key])

    def _map(self) -> np.memmap:
        """Map the entry read-only (each open map holds a file descriptor: never keep one)."""
        try:
            return np.memmap(self.path, self.dtype, "r", self.offset, self.shape)
        except (OSError, ValueError) as error:
            raise AudioclsError(
                f"{self.path}: feature cache entry can no longer be read ({error}). Run again to "
                "rebuild it, or delete the cache folder."
            ) from None

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """Return the whole log-Mel in memory (for np.asarray)."""
        array = self[...]
        return array if dtype is None else array.astype(dtype)

    def __repr__(self) -> str:
        return f"CachedLogMel({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def min(self) -> float:
        """Return the smallest value (reads the whole entry)."""
        return float(self[...].min())


class FeatureCache:
    """Log-Mel features on disk, one entry per (audio file content, feature config)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root else default_cache_dir()

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.root)!r})"

    def folder(self, config: FeatureConfig) -> Path:
        """Return the folder that holds the entries of one feature config."""
        return self.root / f"v{CACHE_VERSION}" / config.key()

    def entry_path(self, digest: str, config: FeatureConfig) -> Path:
        """Return where the entry for content `digest` and `config` lives."""
        return self.folder(config) / digest[:2] / f"{digest}.npy"

    def content_hash(self, path: str | Path) -> str:
        """Return the SHA-256 of a file's content, from the stat index when the file is unchanged."""
        looked_up = self._indexed_hash(path)
        return looked_up[0] or self._hash_and_index(path, *looked_up[1:])

    def _hash_and_index(self, path: str | Path, index_path: Path, stat: os.stat_result) -> str:
        """Hash a file's bytes and remember the hash under its stat, once the file has settled."""
        digest = file_sha256(path)
        settled = time.time_ns() - max(stat.st_mtime_ns, stat.st_ctime_ns) > SETTLE_SECONDS * 1e9
        if settled:
            self._write(index_path, digest.encode())
        return digest

    def _indexed_hash(self, path: str | Path) -> tuple[str | None, Path, os.stat_result]:
        """Return the hash the stat index holds for `path` (or None), its index file and stat."""
        path = Path(os.path.abspath(path))  # no resolve(): a symlinked path just indexes again
        try:
            stat = path.stat()
        except OSError as error:
            raise AudioclsError(f"{path}: cannot read the file ({error.strerror})") from None
        key_text = "\0".join(map(str, (path, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns,
                                       stat.st_ino, stat.st_dev)))
        key = hashlib.sha256(key_text.encode()).hexdigest()
        index_path = self.root / "index" / key[:2] / key
        try:
            digest = index_path.read_text().strip()
            if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
                return digest, index_path, stat
        except (OSError, UnicodeDecodeError):
            pass
        return None, index_path, stat

    def load(self, digest: str, config: FeatureConfig) -> CachedLogMel | None:
        """Return the entry for `digest`, or None when there is none; a broken one is deleted."""
        path = self.entry_path(digest, config)
        expected = np.dtype(str(storage_dtype(config)).removeprefix("torch."))
        try:
            shape, dtype, offset = read_entry_header(path)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError) as error:
            problem = f"{type(error).__name__}: {error}"
        else:
            if len(shape) == 2 and shape[0] == config.n_mels and shape[1] > 0 and dtype == expected:
                return CachedLogMel(path, shape, dtype, offset)
            problem = f"holds {dtype} {shape}, expected {expected} ({config.n_mels}, frames)"
        warnings.warn(f"Feature cache entry {path} is damaged ({problem}); deleting it and "
                      "computing it again", RuntimeWarning, stacklevel=2)
        path.unlink(missing_ok=True)
        return None

    def store(self, digest: str, config: FeatureConfig, log_mel: torch.Tensor) -> CachedLogMel:
        """Write one entry atomically and return it."""
        folder = self.folder(config)
        if not (folder / "config.json").exists():  # for people browsing the cache
            self._write(folder / "config.json", (json.dumps(config.to_dict(), indent=2) + "\n"
                                                 ).encode())
        array = np.ascontiguousarray(log_mel.detach().cpu().numpy())  # .npy in C order
        buffer = io.BytesIO()
        np.save(buffer, array)
        offset = buffer.tell() - array.nbytes
        buffer.write(checksum_trailer(array.reshape(-1).view(np.uint8)))
        path = self.entry_path(digest, config)
        self._write(path, buffer.getvalue())
        return CachedLogMel(path, tuple(array.shape), array.dtype, offset)

    def log_mels(
        self,
        paths: Sequence[str | Path],
        config: FeatureConfig,
        device: str | torch.device = "cpu",
        num_workers: int | None = None,
        progress: bool = True,
    ) -> list[CachedLogMel]:
        """Return every clip's cached log-Mel, computing and storing the missing ones first.

        `device` and `num_workers` are those of `features.iter_log_mels`.
        """
        looked_up = [self._indexed_hash(path) for path in paths]
        unknown = [(path, *found[1:]) for path, found in zip(paths, looked_up, strict=True)
                   if found[0] is None]
        hashed = iter(())
        if unknown:  # new or changed files: read them whole, on all cores (hashlib frees the GIL)
            with ThreadPoolExecutor(os.cpu_count() or 1) as threads:
                hashed = iter(list(tqdm(threads.map(lambda found: self._hash_and_index(*found), unknown),
                                        total=len(unknown), desc="Hashing clips", unit="clip",
                                        disable=not progress)))
        digests = [found[0] or next(hashed) for found in looked_up]
        entries = {digest: self.load(digest, config) for digest in dict.fromkeys(digests)}
        missing = {d: p for d, p in zip(digests, paths, strict=True) if entries[d] is None}
        if missing:
            order = list(missing)  # one path per content: duplicated files are computed once
            # Each entry is written where it is computed (a worker process on a CPU).
            for index, entry in iter_log_mels([missing[d] for d in order], config, device,
                                              num_workers, progress,
                                              finish=_StoreEntry(self, config, order)):
                entries[order[index]] = entry
        return [entries[d] for d in digests]  # type: ignore[misc]

    def _write(self, path: Path, data: bytes) -> None:
        """Write a cache file atomically (no fsync: entries are checked when read)."""
        try:
            write_bytes(path, data, fsync=False)
        except OSError as error:
            raise AudioclsError(
                f"Cannot write the feature cache in {self.root} ({error.strerror or error}). Set "
                "AUDIOCLS_CACHE to a writable folder with free space, or turn the cache off "
                "(cache=False, `audiocls train --no-cache`)."
            ) from None


class _StoreEntry:
    """Write the log-Mel of the clip at `index` of `digests` into the cache; return the entry."""

    def __init__(self, cache: FeatureCache, config: FeatureConfig, digests: list[str]) -> None:
        self.cache, self.config, self.digests = cache, config, digests

    def __call__(self, index: int, log_mel: torch.Tensor) -> CachedLogMel:
        return self.cache.store(self.digests[index], self.config, log_mel)
