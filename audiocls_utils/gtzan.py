"""GTZAN facts: its genres, where the archive lives, and the artist-filtered split.

GTZAN (Tzanetakis and Cook, 2002) has 1,000 clips of 30 s, 100 per genre, named
`<genre>.000NN.wav` (`.au` in older copies). Sturm (2013) showed that it repeats clips and
artists across those 100: a random split puts the same artist, sometimes the same recording, in
training and test, so random-split accuracy overstates how well a model recognises genre.
Kereliuk, Sturm and Larsen (2015) published an artist-filtered split (443 train, 197 validation,
290 test; 70 faulty clips left out) that keeps each artist on one side. torchaudio carries those
lists; `split_filtered` applies them to a manifest, matching clips by name whatever the extension.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .errors import AudioclsError

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae",
          "rock")
CLIP_ID = re.compile(rf"^(?P<genre>{'|'.join(GENRES)})\.(?P<number>\d{{5}})$")  # blues.00042

# Files known to be broken in public copies of GTZAN, and what to say when one fails to decode.
# Matched by name only once decoding has failed: the original archive's copy decodes and is used.
KNOWN_BAD_FILES = {
    "jazz.00054.wav": "the known corruption of GTZAN's Kaggle copy: the original archive's "
                      "copy decodes (get it with `audiocls download gtzan`)",
}


# Where `audiocls download gtzan` puts GTZAN and where the chapters look for it (relative to the
# course folder); `find_gtzan` also accepts `data/GTZAN`, the folder earlier versions named.
DATA_DIR = Path("data") / "gtzan"


def find_gtzan(course_root: Path) -> Path | None:
    """Return the GTZAN folder under `course_root/data` (`gtzan` in any letter case), or None."""
    data = course_root / DATA_DIR.parent
    if (course_root / DATA_DIR).is_dir():
        return course_root / DATA_DIR
    if not data.is_dir():
        return None
    matches = sorted(p for p in data.iterdir() if p.is_dir() and p.name.lower() == DATA_DIR.name)
    return matches[0] if matches else None


# The split sizes Kereliuk et al. (2015) published; torchaudio's lists have exactly these.
FILTERED_SIZES = {"train": 443, "val": 197, "test": 290}
# Below this share of the listed clips, the data is not (a complete copy of) GTZAN.
MIN_COVERAGE = 0.9


@dataclass(frozen=True)
class ArchiveSource:
    """Where to download an archive, its SHA-256, and where that checksum is documented."""

    url: str
    sha256: str
    checksum_source: str


SOURCES = {
    # The Hugging Face copy of the Marsyas archive; the checksum is the one its LFS page shows.
    "huggingface": ArchiveSource(
        url="https://huggingface.co/datasets/marsyas/gtzan/resolve/main/data/genres.tar.gz",
        sha256="b28cc067ff6199bd826f5d1a6931458586d64acae7f44b2e882b7a97af057531",
        checksum_source="Git LFS details of data/genres.tar.gz on huggingface.co/datasets/marsyas/gtzan",
    ),
    # The original Marsyas server (often unreachable); the checksum torchaudio's GTZAN verifies.
    "uvic": ArchiveSource(
        url="http://opihi.cs.uvic.ca/sound/genres.tar.gz",
        sha256="24347e0223d2ba798e0a558c4c172d9d4a19c00bb7963fe055d183dadb4ef2c6",
        checksum_source="torchaudio.datasets.gtzan._CHECKSUMS",
    ),
}
DEFAULT_SOURCE = "huggingface"


def known_sha256(url: str) -> str | None:
    """Return the documented SHA-256 of a known GTZAN archive URL, else None."""
    return next((source.sha256 for source in SOURCES.values() if source.url == url), None)


def clip_id(path: str | Path) -> str:
    """Return a clip's GTZAN id, its file name without extension: `.../blues.00042.au` -> blues.00042."""
    return Path(path).stem


def filtered_split_lists() -> dict[str, list[str]]:
    """Return the artist-filtered split as torchaudio ships it: split name -> clip ids."""
    try:
        from torchaudio.datasets import gtzan
    except ImportError as error:  # torchaudio is a dependency; this is a broken install
        raise AudioclsError(f"The filtered split needs torchaudio.datasets.gtzan ({error}); "
                            "reinstall with `make install`") from None
    return {"train": list(gtzan.filtered_train), "val": list(gtzan.filtered_valid),
            "test": list(gtzan.filtered_test)}


def split_filtered(manifest: pd.DataFrame) -> pd.DataFrame:
    """Return the manifest's clips that Kereliuk et al. (2015) kept, with their `split`.

    The 70 clips the published split leaves out (repeats, distortions, mislabellings) are
    dropped; a clip whose name is not a GTZAN name is an error, as is a copy missing more than
    a tenth of the listed clips.
    """
    lists = filtered_split_lists()
    split_of = {clip: split for split, clips in lists.items() for clip in clips}
    ids = manifest["path"].map(clip_id)
    foreign = manifest.loc[~ids.str.match(CLIP_ID.pattern), "path"].tolist()
    if foreign:
        raise AudioclsError(
            f"--split filtered is GTZAN's artist-filtered split, but {len(foreign)} clip(s) have no "
            f"GTZAN name (<genre>.000NN), e.g. {foreign[0]}. Use --split group or --split random"
        )
    misfiled = manifest.loc[ids.str.split(".").str[0] != manifest["label"].astype(str), "path"]
    if len(misfiled):
        raise AudioclsError(f"{misfiled.iloc[0]} is named for another genre than its folder: "
                            "put each GTZAN clip back in its genre folder")
    listed = ids.isin(split_of)
    present = int(listed.sum())
    if present < MIN_COVERAGE * len(split_of):
        raise AudioclsError(
            f"Only {present} of the {len(split_of)} clips of GTZAN's filtered split are in this data "
            "set: it is not a complete GTZAN copy (the built-in synthetic set only borrows GTZAN's "
            "file names). Use --split group or --split random"
        )
    missing = sorted(set(split_of) - set(ids))
    if missing:
        print(f"Note: {len(missing)} clip(s) of the filtered split are not in the manifest "
              f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})")
    if (~listed).any():
        print(f"Note: {int((~listed).sum())} clip(s) that the filtered split leaves out (repeats and "
              "distortions found by Sturm) are not used")
    kept = manifest.loc[listed].copy()
    kept["split"] = ids[listed].map(split_of)
    return kept.reset_index(drop=True)
