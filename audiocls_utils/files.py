"""Files: outputs written atomically, the SHA-256 of a file's bytes, and a cheap signature of them.

Writes go to a temporary file in the same folder, then a rename: a run killed at any moment
leaves either the old file or the new one, never half of one. A process killed during a write
leaves its temporary file, named `.<name>.<random>.audiocls.tmp`, which `remove_temp_files`
deletes once nobody can still be writing it (a run holding its folder's lock).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import torch

_UMASK = os.umask(0)
os.umask(_UMASK)
_CHUNK = 1 << 20  # bytes hashed at a time
EDGE_BYTES = 1 << 16  # bytes `file_signature` hashes at each end of a file
TEMP_SUFFIX = ".audiocls.tmp"  # temporary files of `write_bytes`: .<name>.<random>.audiocls.tmp


def file_sha256(path: str | Path) -> str:
    """Return the SHA-256 of a file's bytes, as 64 hex digits (read 1 MiB at a time)."""
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as file:
        while size := file.readinto(buffer):
            digest.update(view[:size])
    return digest.hexdigest()


def file_signature(path: str | Path) -> str:
    """Return a cheap signature of a file's content: size, mtime_ns and a hash of both ends.

    It changes when the file is rewritten (new modification time) or edited near either end
    (64 KiB each, where a regenerated clip's header and samples differ); "missing" for no file.
    """
    try:
        with open(path, "rb", buffering=0) as file:
            stat = os.fstat(file.fileno())
            head = file.read(EDGE_BYTES)
            if stat.st_size > 2 * EDGE_BYTES:
                file.seek(-EDGE_BYTES, os.SEEK_END)
            tail = file.read(EDGE_BYTES)
    except OSError:
        return "missing"
    digest = hashlib.sha256(head + tail).hexdigest()[:32]
    return f"{stat.st_size}:{stat.st_mtime_ns}:{digest}"


def same_file(first: str | Path, second: str | Path) -> bool:
    """Return True when two paths name one file: the same path once resolved, or one inode."""
    first, second = Path(first).expanduser(), Path(second).expanduser()
    if first.resolve() == second.resolve():
        return True
    try:
        return os.path.samefile(first, second)  # a hard link, a bind mount
    except OSError:  # one of them does not exist (yet)
        return False


def pipe_problem(path: str | Path) -> str | None:
    """Say why a pipe or device (a FIFO, a process substitution `<(...)`) is not a file; else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kind = "a pipe (a FIFO or a process substitution <(...))" if stat.S_ISFIFO(mode) else "a device"
    return (f"{kind}, not a file: it can be read only once, from the start; save it to a file "
            "and pass that")


def write_bytes(path: str | Path, data: bytes, fsync: bool = True) -> None:
    """Write `data` to `path` atomically (fsync, then rename over any old file).

    `fsync=False` skips the wait for the disk, for files that can be made again and are checked
    when read (cache entries): a killed process still never leaves half a file, but a power cut
    may leave an empty or truncated one for the reader to detect.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                          suffix=TEMP_SUFFIX)
    try:
        os.chmod(temp_name, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            if fsync:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException as error:
        Path(temp_name).unlink(missing_ok=True)
        if isinstance(error, OSError) and not error.filename:
            error.filename = str(path)  # a full disk's ENOSPC names no file: name the output
        raise


def is_temp_file(path: str | Path) -> bool:
    """Return True for a temporary file of `write_bytes` (what a killed write leaves behind)."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(TEMP_SUFFIX) and len(name) > len(TEMP_SUFFIX) + 1


def remove_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files `write_bytes` left in `folder` (not below it); return them.

    Call it only where no other process can be writing (a run folder whose lock you hold).
    """
    try:
        found = [p for p in Path(folder).iterdir() if is_temp_file(p) and p.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    for path in found:
        path.unlink(missing_ok=True)
    return found


def write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON (indented, keys in insertion order) atomically."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_csv(table: pd.DataFrame, path: str | Path) -> None:
    """Write a DataFrame as CSV (no index) atomically."""
    write_text(path, table.to_csv(index=False))


def save_torch(obj: Any, path: str | Path) -> None:
    """Save with torch.save atomically."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getvalue())


def load_torch(path: str | Path) -> Any:
    """Load a file written by `save_torch` safely: tensors and plain Python types only."""
    return torch.load(path, map_location="cpu", weights_only=True)
