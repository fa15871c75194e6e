"""Free Spoken Digit Dataset facts: where its archive lives and the digest of its recordings.

FSDD (Jakobovski et al.) holds 3,000 recordings of the digits 0-9, six speakers, 50 takes each,
named `{digit}_{speaker}_{take}.wav` (8 kHz mono; CC BY-SA 4.0). Its only download is the
archive GitHub generates from a commit. GitHub does not promise that archive's bytes stay the
same (its compression has changed before), so a checksum of the archive could fail on a good
download; what is pinned instead is the content: one SHA-256 over every recording's name and
SHA-256 (`recordings_digest`), computed from the recordings at that commit.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .files import file_sha256

COMMIT = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"  # the copy in ../shared/data/fsdd (2024)
URL = f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/{COMMIT}.tar.gz"
NUM_RECORDINGS = 3000
# recordings_digest of the archive's recordings/ at COMMIT (tests check it against a real copy).
RECORDINGS_DIGEST = "8dac6ce326e419e9fcfadedf2e4a67d6c08a40968c34bb8fa2b4e27d74753d5a"
# Where `audiocls download fsdd` puts the recordings (relative to the course folder).
DATA_DIR = Path("data") / "fsdd"
RECORDINGS = "recordings"  # the archive's folder of clips, kept under that name


def recordings_digest(folder: str | Path) -> tuple[str, int]:
    """Return the SHA-256 over the sorted (name, SHA-256) pairs of the recordings (.wav files)
    below `folder`, and how many there are.

    Each recording adds the line `<path relative to folder>TAB<its SHA-256>NEWLINE`; the digest
    is the SHA-256 of those lines in sorted order, so it changes when a recording is added,
    removed, renamed or altered, and not with the archive's compression or file dates (nor
    with a file beside the recordings that is not one, such as a .gitkeep).
    """
    folder = Path(folder)
    files = sorted((p.relative_to(folder).as_posix(), p) for p in folder.rglob("*.wav")
                   if p.is_file())
    lines = "".join(f"{name}\t{file_sha256(path)}\n" for name, path in files)
    return hashlib.sha256(lines.encode("utf-8")).hexdigest(), len(files)
