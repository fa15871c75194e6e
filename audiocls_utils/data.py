"""Find clips, build the manifest, make splits, and serve segments for training."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .audio import AudioInfo, content_problem, describe_audio, is_audio_path, unsupported_audio
from .config import SPLIT_NAMES
from .errors import AudioclsError
from .features import crop_or_pad, window_starts
from .files import file_sha256, pipe_problem, write_csv
from .gtzan import KNOWN_BAD_FILES, split_filtered

MANIFEST_COLUMNS = ["path", "label", "group", "duration", "sample_rate", "channels", "split"]

# Regular expressions that read the label (and group) from a file name, for flat folders.
LABEL_PATTERNS = {
    "fsdd": r"^(?P<label>\d)_(?P<group>[A-Za-z]+)_\d+$",  # {digit}_{speaker}_{take}.wav
}

GROUPS_FILE = "groups.csv"
LONG_SECONDS = 600.0  # longer clips are kept, with a note: training sees random segments of them


@dataclass(frozen=True)
class Excluded:
    """A clip left out of the manifest, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def course_root() -> Path:
    """Return the course folder (holding notebooks/ and audiocls_utils/), else the working folder."""
    here = Path.cwd().resolve()
    for folder in (Path(__file__).resolve().parents[1], here, *here.parents):
        if (folder / "notebooks").is_dir() and (folder / "audiocls_utils").is_dir():
            return folder
    return here


def find_data_root(data_dir: str | Path) -> Path:
    """Return the folder of class folders inside `data_dir` (GTZAN's and Kaggle's layouts too)."""
    root = Path(data_dir).expanduser()
    if root.exists() and not root.is_dir():
        raise AudioclsError(f"Data folder {root} is a file, not a folder. Pass --data-dir "
                            "pointing at the folder that holds one sub-folder per class (to "
                            "label single files, use `audiocls predict`).")
    if not root.is_dir():
        raise AudioclsError(
            f"Data folder {root} does not exist. Pass --data-dir pointing at a folder with one "
            "sub-folder per class (or run `audiocls synth --out data/synth` for a built-in set)."
        )
    for candidate in (root / "genres", root / "Data" / "genres_original", root / "genres_original"):
        if candidate.is_dir():
            return candidate
    return root


def find_audio_files(root: Path) -> tuple[list[Path], list[Excluded]]:
    """List audio files below `root`, sorted, and what is left out with why.

    Hidden files and folders are skipped; linked folders are followed (once each: a link back
    to a folder already listed is excluded, so no loop); a folder that cannot be listed (a path
    too long, no permission) and a file in a format we cannot decode (.m4a) are excluded. The
    walk keeps its own stack, so no depth of folders exhausts Python's recursion limit.
    """
    found: list[Path] = []
    excluded: list[Excluded] = []
    listed: dict[str, Path] = {}  # real path -> the folder it was listed as
    stack = [Path(root)]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in listed:
            excluded.append(Excluded(printable(folder), f"the same folder as "
                                     f"{printable(listed[real])} (through a link): read once, there"))
            continue
        listed[real] = folder
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as error:
            excluded.append(Excluded(printable(folder), "folder cannot be listed "
                                     f"({error.strerror}): move or rename it to read it"))
            continue
        for entry in entries:
            if _is_folder(entry):
                continue
            if is_audio_path(entry.name):
                found.append(folder / entry.name)
            elif reason := unsupported_audio(entry.name):
                excluded.append(Excluded(printable(folder / entry.name), reason))
        stack.extend(reversed([folder / entry.name for entry in entries
                               if _is_folder(entry) and not entry.name.startswith(".")]))
    return found, excluded


def _is_folder(entry: os.DirEntry) -> bool:
    """Return True for a folder or a link to one; False for anything else, a link loop too."""
    try:
        return entry.is_dir()
    except OSError:  # ELOOP: the decoder names the loop when it tries the file
        return False


def _label_from_folder(root: Path) -> Callable[[Path], tuple[str, str] | None]:
    """Return a reader of (label, group) from the first folder below `root`; no group."""

    def read(path: Path) -> tuple[str, str] | None:
        parts = path.relative_to(root).parts
        return (parts[0], "") if len(parts) >= 2 else None

    return read


def compile_label_pattern(pattern: str) -> re.Pattern[str]:
    """Return the regex of a named pattern or of `pattern`, or raise one line saying what is wrong."""
    if pattern in LABEL_PATTERNS:
        return re.compile(LABEL_PATTERNS[pattern])
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise AudioclsError(f"--label-pattern '{pattern}' is not a valid regular expression "
                            f"({error.msg} at position {error.pos}): fix it, or use one of "
                            f"{sorted(LABEL_PATTERNS)}") from None
    if "label" not in regex.groupindex:
        raise AudioclsError(f"--label-pattern '{pattern}' has no named group (?P<label>...): "
                            r"add one, e.g. '(?P<label>[a-z]+)_\d+'")
    return regex


def _label_from_pattern(pattern: str) -> Callable[[Path], tuple[str, str] | None]:
    """Return a reader of (label, group) from a file name via a regex with named groups."""
    regex = compile_label_pattern(pattern)

    def read(path: Path) -> tuple[str, str] | None:
        match = regex.match(path.stem)
        if match is None:
            return None
        if not (match["label"] or "").strip():
            raise AudioclsError(f"--label-pattern {pattern!r} gives {printable(path)} an empty "
                                "label: make (?P<label>...) match at least one character (e.g. "
                                "[a-z]+, not [a-z]*)")
        return match["label"], match.groupdict().get("group") or ""

    return read


def check_table(path: str | Path, what: str, columns: Sequence[str],
                filled: Sequence[str] | None = None, numeric: Sequence[str] = ()) -> None:
    """Stop unless `path` is a UTF-8 CSV with `columns`, those in `filled` (default: all) filled
    in, and numbers in the `numeric` ones."""
    path = Path(path)
    pipe = pipe_problem(path)
    if pipe:
        raise AudioclsError(f"{what} {path} is {pipe}")
    if not path.is_file():
        raise AudioclsError(f"{what} {path} not found: check the path")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise AudioclsError(f"{what} {path} is empty: it needs a header line "
                            f"{','.join(columns)} and one row per clip") from None
    except UnicodeDecodeError as error:
        raise AudioclsError(f"{what} {path} is not UTF-8 text (byte 0x{error.object[error.start]:02x}"
                            f" at position {error.start}): save it as a UTF-8 CSV with columns "
                            f"{','.join(columns)}") from None
    except pd.errors.ParserError as error:
        reason = str(error).splitlines()[0].removeprefix("Error tokenizing data. C error: ")
        raise AudioclsError(f"{what} {path} is not a readable CSV ({reason}): save it as UTF-8 "
                            f"comma-separated text with columns {','.join(columns)}") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise AudioclsError(f"{what} {path} lacks column(s) {missing} (found "
                            f"{list(table.columns)}): it needs {','.join(columns)}")
    for column in columns if filled is None else filled:
        blank = table.index[table[column].str.strip() == ""].tolist()
        if blank:
            raise AudioclsError(f"{what} {path}: row(s) {[i + 2 for i in blank[:5]]} have no "
                                f"{column}; fill them in or delete the rows")
    repeated = table.index[table["path"].duplicated()].tolist() if "path" in columns else []
    if repeated:
        first = table.index[table["path"] == table.at[repeated[0], "path"]][0]
        raise AudioclsError(f"{what} {path} lists {table.at[first, 'path']!r} twice (rows "
                            f"{first + 2} and {repeated[0] + 2}): keep one row per clip")
    for column in numeric:
        bad = table.index[pd.to_numeric(table[column], errors="coerce").isna()].tolist()
        if bad:
            raise AudioclsError(f"{what} {path}: column {column!r} holds "
                                f"{table.at[bad[0], column]!r} in row {bad[0] + 2}, not a number; "
                                "write the manifest again with `audiocls prepare`")


def read_groups(root: Path) -> dict[str, str]:
    """Read `root/groups.csv` (columns path,group; paths relative to root) if it exists."""
    table_path = root / GROUPS_FILE
    if not table_path.exists():
        return {}
    check_table(table_path, "Groups file", ("path", "group"), filled=("path",))
    table = pd.read_csv(table_path, dtype=str, keep_default_na=False)
    return dict(zip(table["path"], table["group"], strict=True))


def check_groups_matched(groups: dict[str, str], clips: set[str], root: Path) -> None:
    """Stop when groups.csv names clips but none of them is a clip found below `root`."""
    if groups and clips and not clips & set(groups):
        listed, example = next(iter(groups)), min(clips)
        raise AudioclsError(f"{root / GROUPS_FILE}: none of its {len(groups)} path(s) is a clip "
                            f"below {root} (e.g. {listed!r}); its paths are relative to that "
                            f"folder, like {example!r}: fix them")


def build_manifest(
    data_dir: str | Path,
    label_pattern: str | None = None,
    progress: bool = True,
    labels_csv: str | Path | None = None,
    allow_similar_labels: bool = False,
) -> tuple[pd.DataFrame, list[Excluded]]:
    """Decode every clip below `data_dir` once and return the manifest and the excluded clips.

    Labels come from the class folder (`root/<label>/<file>`), from the file name when
    `label_pattern` is given (a name in LABEL_PATTERNS or a regex with (?P<label>) and optional
    (?P<group>)), or from `labels_csv` (columns path,label[,group]; paths relative to the data
    folder). Groups (speaker, artist) come from the pattern, the CSV or `root/groups.csv`.
    Labels that look like typos of one another stop it (`check_label_typos`) unless
    `allow_similar_labels` (e.g. `tree` and `three` are both real classes).
    """
    root = find_data_root(data_dir)
    excluded: list[Excluded] = []
    if labels_csv is not None:
        candidates, missing = _read_labels_csv(root, Path(labels_csv))
        excluded.extend(missing)
    else:
        candidates, left_out = _labelled_files(root, label_pattern)
        excluded.extend(left_out)
    rows = []
    for path, label, group in tqdm(candidates, desc="Checking clips", unit="clip",
                                   disable=not progress):
        if printable(path) != str(path):  # the manifest CSV must be able to hold its name
            problem, info = "file name is not valid UTF-8: rename it (e.g. with `convmv`)", None
        else:
            problem, info = check_clip(path)
        if problem:
            excluded.append(Excluded(printable(path), problem))
            continue
        rows.append({
            "path": str(path.resolve()),
            "label": label,
            "group": group,
            "duration": round(info.duration, 4),
            "sample_rate": info.sample_rate,
            "channels": info.channels,
        })
    copies = copies_across_classes(rows)
    excluded.extend(copies)
    copied = {item.path for item in copies}
    rows = [row for row in rows if row["path"] not in copied]
    if not rows:
        raise AudioclsError(
            f"No usable audio clips in {root}. Expected `<class>/<file>.wav` folders"
            + (f" or file names matching {label_pattern!r}" if label_pattern else "")
            + (f"; {len(excluded)} file(s) were excluded, e.g. {excluded[0]}" if excluded else "")
        )
    manifest = pd.DataFrame(rows).sort_values(["label", "path"], ignore_index=True)
    check_labels(manifest, allow_similar_labels)
    return manifest, excluded


def _labelled_files(root: Path, label_pattern: str | None
                    ) -> tuple[list[tuple[Path, str, str]], list[Excluded]]:
    """Return (path, label, group) of the audio files below `root` that name a label, and the
    files left out; labels from the class folder or `label_pattern`, groups from groups.csv."""
    read_label = _label_from_pattern(label_pattern) if label_pattern else _label_from_folder(root)
    groups = read_groups(root)
    candidates = []
    paths, left_out = find_audio_files(root)
    for path in paths:
        labelled = read_label(path)
        if labelled is not None:  # else: not in a class folder, or not matching: not a clip
            relative = path.relative_to(root).as_posix()
            candidates.append((path, labelled[0], groups.get(relative, labelled[1])))
    check_groups_matched(groups, {path.relative_to(root).as_posix() for path in paths}, root)
    return candidates, left_out


def copies_across_classes(rows: list[dict]) -> list[Excluded]:
    """Return the clips whose bytes are those of a clip of another class, each naming the other.

    One recording cannot have two labels: both copies are left out. Only files of equal size
    are hashed.
    """
    by_size: dict[int, list[dict]] = {}
    for row in rows:
        by_size.setdefault(os.stat(row["path"]).st_size, []).append(row)
    by_hash: dict[str, list[dict]] = {}
    for same_size in by_size.values():
        if len({row["label"] for row in same_size}) > 1:
            for row in same_size:
                by_hash.setdefault(file_sha256(row["path"]), []).append(row)
    copies = []
    for same in by_hash.values():
        for row in same:
            others = [o for o in same if o["label"] != row["label"]]
            if others:
                copies.append(Excluded(row["path"], f"the same bytes as {others[0]['path']} "
                                       f"(labelled {others[0]['label']!r}): one clip cannot have "
                                       "two labels; delete the wrong copy"))
    return copies


def printable(path: Path) -> str:
    """Return a path that prints anywhere: bytes that aren't UTF-8 are shown as escapes."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def check_clip(path: str | Path) -> tuple[str | None, AudioInfo | None]:
    """Return (why the clip cannot be used, None) or (None, its description).

    The one check of a clip: `build_manifest` excludes what it rejects. Decodes the whole file,
    block by block. `predict` applies its two parts (`decode_problem`, `content_problem`) in the
    pass that computes the file's features, so it decodes each file once.
    """
    try:
        info = describe_audio(path)
    except AudioclsError as error:
        return decode_problem(path, error), None
    problem = content_problem(info)
    return (problem, None) if problem else (None, info)


def decode_problem(path: str | Path, error: AudioclsError) -> str:
    """Return why `path` could not be decoded (`error` without the path), naming a known bad file."""
    path = Path(path)
    reason = str(error).removeprefix(f"{path}: ")
    known = KNOWN_BAD_FILES.get(path.name)
    return f"{reason.rstrip('.')}. It is {known}" if known else reason


def _read_labels_csv(root: Path, table_path: Path) -> tuple[list[tuple[Path, str, str]],
                                                             list[Excluded]]:
    """Read (path, label, group) rows from a labels CSV; listed files that are missing are excluded."""
    check_table(table_path, "Labels file", ("path", "label"))
    table = pd.read_csv(table_path, dtype=str, keep_default_na=False)
    blank = table.index[table["label"].str.strip() == ""].tolist()
    if blank:
        raise AudioclsError(f"{table_path}: row(s) {[i + 2 for i in blank[:5]]} have no label; "
                            "fill them in or delete the rows")
    rows, missing = [], []
    for record in table.itertuples(index=False):
        path = Path(record.path) if Path(record.path).is_absolute() else root / record.path
        if not path.exists():
            missing.append(Excluded(str(path), f"listed in {table_path.name} but missing"))
            continue
        rows.append((path, str(record.label), str(getattr(record, "group", "") or "")))
    return rows, missing


def check_labels(manifest: pd.DataFrame, allow_similar_labels: bool = False) -> None:
    """Raise on a clip without a label, or on labels that look like typos of one another
    (`check_label_typos`) unless `allow_similar_labels`: prepare's checks, for any manifest."""
    blank = manifest.loc[manifest["label"].fillna("").astype(str).str.strip() == "", "path"]
    if len(blank):
        raise AudioclsError(f"{blank.iloc[0]} has an empty label ({len(blank)} clip(s) have "
                            "none): give every clip a label")
    if not allow_similar_labels:
        check_label_typos(manifest)


def check_label_typos(manifest: pd.DataFrame) -> None:
    """Raise when two labels differ only by case, spacing or a near-miss spelling of a rare one."""
    counts = manifest["label"].value_counts()
    labels = sorted(counts.index)
    for i, label in enumerate(labels):
        for other in labels[i + 1:]:
            same_text = label.strip().lower() == other.strip().lower()
            close = difflib.SequenceMatcher(None, label.lower(), other.lower()).ratio() >= 0.8
            rare, common = sorted((label, other), key=lambda name: counts[name])
            if same_text or (close and counts[rare] * 5 <= counts[common]):
                raise AudioclsError(
                    f"Label {rare!r} ({counts[rare]} clip(s)) looks like a typo of {common!r} "
                    f"({counts[common]} clips): rename the folder or fix the labels file; if "
                    "both are real classes, pass --allow-similar-labels "
                    "(allow_similar_labels=True in Python)"
                )


def manifest_notes(manifest: pd.DataFrame) -> list[str]:
    """Return one line per kept clip or class that deserves a note (very long clips)."""
    notes = []
    for row in manifest[manifest["duration"] > LONG_SECONDS].itertuples():
        notes.append(f"{row.path}: very long clip ({row.duration / 60:.1f} min), kept; training "
                     "uses random segments of it and evaluation averages all its windows")
    return notes


def class_names(manifest: pd.DataFrame) -> list[str]:
    """Return the sorted class list: one global label map, whatever the split."""
    return sorted(manifest["label"].astype(str).unique())


def split_random(
    manifest: pd.DataFrame, test_fraction: float = 0.2, val_fraction: float = 0.1, seed: int = 42
) -> pd.DataFrame:
    """Split each class at random: the original recipe's 80/20 (its 20% is our test set), val from the 80%."""
    rng = np.random.default_rng(seed)
    split = pd.Series("train", index=manifest.index)
    for _, members in manifest.groupby("label", sort=True):
        order = rng.permutation(members.index.to_numpy())
        n_test = int(round(len(order) * test_fraction))
        n_val = int(round(len(order) * val_fraction))
        if len(order) >= 3:  # leave at least one training clip
            n_test, n_val = max(1, n_test), max(1, n_val)
        n_test, n_val = min(n_test, len(order) - 1), min(n_val, max(0, len(order) - 1 - n_test))
        split[order[:n_test]] = "test"
        split[order[n_test : n_test + n_val]] = "val"
    return manifest.assign(split=split)


def split_by_group(
    manifest: pd.DataFrame, test_fraction: float = 0.2, val_fraction: float = 0.1, seed: int = 42
) -> pd.DataFrame:
    """Split by `group` (speaker, artist) so that no group appears in two splits.

    When each group holds one class (an artist plays one genre), groups are divided class by
    class, so every split still has every class; otherwise (a speaker says every digit) groups
    are divided as a whole.
    """
    groups = manifest["group"].fillna("").astype(str)
    if (groups == "").any():
        missing = manifest.loc[groups == "", "path"].head(3).tolist()
        raise AudioclsError(
            f"--split group needs a group for every clip; e.g. {missing} have none. Add a "
            f"{GROUPS_FILE} (path,group) to the data folder or use a label pattern with (?P<group>)"
        )
    rng = np.random.default_rng(seed)
    nested = manifest.assign(group=groups).groupby("group")["label"].nunique().max() == 1
    parts = [groups[manifest["label"] == label] for label in sorted(manifest["label"].unique())]
    split_of: dict[str, str] = {}
    for part in parts if nested else [groups]:
        split_of.update(_assign_groups(part.value_counts(), test_fraction, val_fraction, rng))
    if "train" not in split_of.values():
        raise AudioclsError(f"Too few groups ({len(split_of)}) to leave any for training")
    return manifest.assign(split=groups.map(split_of))


def _assign_groups(sizes: pd.Series, test_fraction: float, val_fraction: float,
                   rng: np.random.Generator) -> dict[str, str]:
    """Give each group (sizes: clips per group) a split, test first, then val, the rest train."""
    names = list(rng.permutation(sorted(sizes.index)))
    total = int(sizes.sum())
    targets = {"test": test_fraction * total, "val": val_fraction * total}
    filled = {"test": 0, "val": 0}
    split_of: dict[str, str] = {}
    for position, name in enumerate(names):
        target = "train"
        if position < len(names) - 1 or "train" in split_of.values():  # train keeps one group
            for split in ("test", "val"):  # take the group where it brings the split nearer its size
                after = filled[split] + sizes[name]
                if filled[split] == 0 or abs(after - targets[split]) < abs(filled[split] - targets[split]):
                    target, filled[split] = split, after
                    break
        split_of[name] = target
    return split_of


def make_splits(manifest: pd.DataFrame, method: str = "random", seed: int = 42) -> pd.DataFrame:
    """Add a `split` column by `method`: random, group, filtered (GTZAN's artist-filtered
    split, which keeps only its 930 listed clips) or keep the manifest's existing one."""
    if method == "random":
        return split_random(manifest, seed=seed)
    if method == "group":
        return split_by_group(manifest, seed=seed)
    if method == "filtered":
        return split_filtered(manifest)
    if method == "existing":
        if "split" not in manifest or manifest["split"].isna().any():
            raise AudioclsError("The manifest has no complete `split` column; run `audiocls prepare`")
        return manifest
    raise AudioclsError(f"Unknown split {method!r}; choose random, group, filtered or existing")


def check_splits(manifest: pd.DataFrame) -> list[str]:
    """Check the splits (d2l-style sanity check): raise if training lacks a class, else warn."""
    bad = sorted(set(manifest["split"]) - set(SPLIT_NAMES))
    if bad:
        raise AudioclsError(f"Unknown split name(s) {bad}; use {list(SPLIT_NAMES)}")
    classes = set(manifest["label"])
    train_classes = set(manifest.loc[manifest["split"] == "train", "label"])
    if classes - train_classes:
        raise AudioclsError(
            f"Class(es) {sorted(classes - train_classes)} have no training clip: add clips or "
            "remove the class folder"
        )
    warnings = []
    for name in ("val", "test"):
        present = set(manifest.loc[manifest["split"] == name, "label"])
        if not present:
            warnings.append(f"the {name} split is empty")
        elif present != classes:
            warnings.append(f"the {name} split has no clip of {sorted(classes - present)}")
    if "group" in manifest and (manifest["group"].fillna("") != "").all():
        shared = _groups_in_several_splits(manifest)
        if shared:
            warnings.append(f"{len(shared)} group(s) appear in several splits (e.g. {shared[:3]}): "
                            "results will be optimistic; split by group (make_splits(manifest, "
                            "'group'), or --split group; chapter 01 measures the difference)")
    return warnings


def _groups_in_several_splits(manifest: pd.DataFrame) -> list[str]:
    """Return the groups whose clips fall into more than one split."""
    per_group = manifest.groupby("group")["split"].nunique()
    return sorted(per_group[per_group > 1].index.astype(str))


def limit_per_class(manifest: pd.DataFrame, clips_per_class: int | None, seed: int = 0
                    ) -> pd.DataFrame:
    """Keep at most `clips_per_class` clips of each class in each split (for cheap profiles)."""
    if clips_per_class is None:
        return manifest
    shuffled = manifest.sample(frac=1.0, random_state=seed)
    kept = shuffled.groupby(["split", "label"], sort=False).head(clips_per_class)
    return kept.sort_values(["label", "path"]).reset_index(drop=True)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet reads these as a formula
TEXT_COLUMNS = ("path", "label", "group")


def escape_cell(value: Any) -> Any:
    """Prefix a ' to text a spreadsheet would run as a formula (OWASP's rule), or that starts with '."""
    if isinstance(value, str) and value.startswith((*FORMULA_STARTS, "'")):
        return "'" + value
    return value


def unescape_cell(value: Any) -> Any:
    """Undo `escape_cell`: drop one leading '."""
    return value[1:] if isinstance(value, str) and value.startswith("'") else value


def save_manifest(manifest: pd.DataFrame, path: str | Path) -> None:
    """Write the manifest CSV atomically, text cells escaped against formula injection."""
    table = manifest[[c for c in MANIFEST_COLUMNS if c in manifest]].copy()
    for column in TEXT_COLUMNS:
        if column in table:
            table[column] = table[column].map(escape_cell)
    write_csv(table, path)


def read_manifest_csv(path: str | Path, **options: Any) -> pd.DataFrame:
    """Read a manifest CSV as `save_manifest` wrote it (escaped cells back to their text)."""
    table = pd.read_csv(path, **options)
    for column in TEXT_COLUMNS:
        if column in table and not pd.api.types.is_numeric_dtype(table[column]):  # all empty: float
            escaped = table[column].str.startswith("'", na=False)
            table.loc[escaped, column] = table.loc[escaped, column].map(unescape_cell)
    return table


def load_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest CSV and check its columns and files."""
    path = Path(path)
    if not path.exists():
        raise AudioclsError(f"Manifest {path} not found; create it with `audiocls prepare`")
    check_table(path, "Manifest", ("path", "label"))
    manifest = read_manifest_csv(path, dtype={"label": str, "group": str, "split": str})
    manifest["group"] = manifest.get("group", pd.Series("", index=manifest.index)).fillna("")
    if manifest.empty:
        raise AudioclsError(f"Manifest {path} has a header but no clips: write it with "
                            "`audiocls prepare --data-dir DATA --out manifest.csv`, or add one "
                            "row per clip")
    folders = [p for p in manifest["path"] if Path(p).is_dir()]
    if folders:
        raise AudioclsError(f"Manifest {path}: {len(folders)} row(s) name a folder, not an audio "
                            f"file, e.g. {folders[0]}; list one clip per row (`audiocls prepare "
                            f"--data-dir {folders[0]}` lists a folder's clips)")
    missing = [p for p in manifest["path"] if not Path(p).exists()]
    if missing:
        raise AudioclsError(f"{path}: {len(missing)} clip(s) no longer exist, e.g. {missing[0]}; "
                            "run `audiocls prepare` again")
    return manifest


class SegmentDataset(Dataset):  #@save
    """Serve fixed-length log-Mel segments as (segment, target, clip index): one random crop of
    each clip per epoch in training, every window of every clip in evaluation."""

    def __init__(self, log_mels, targets, num_frames, train, hop_frames=None):
        assert len(log_mels) == len(targets), "one target per clip"
        self.log_mels, self.targets = list(log_mels), list(targets)
        self.num_frames, self.train = num_frames, train
        # Evaluation windows, (clip, first frame): overlapping, and the last one ends at the clip's end.
        self.windows = [(clip, start) for clip, log_mel in enumerate(self.log_mels)
                        for start in window_starts(log_mel.shape[-1], num_frames,
                                                   hop_frames or num_frames)]

    def __len__(self):
        return len(self.log_mels) if self.train else len(self.windows)

    def __getitem__(self, index):
        clip, start = self.locate(index)
        segment = crop_or_pad(self.log_mels[clip], start, self.num_frames)  # (n_mels, num_frames)
        return segment, self.targets[clip], clip

    def locate(self, index):
        """Return the clip and first frame of item `index`: in training, a random crop of clip `index`."""
        if not self.train:
            return self.windows[index]
        spare = max(0, self.log_mels[index].shape[-1] - self.num_frames)  # frames a crop can skip
        return index, int(torch.randint(spare + 1, ()))


def split_loaders(manifest, log_mels, class_names, num_frames, batch_size):  #@save
    """Return a DataLoader per split: shuffled random crops for train, every window for val and test."""
    loaders = {}
    for split, rows in manifest.groupby("split"):
        positions = [manifest.index.get_loc(i) for i in rows.index]  # rows of this split
        targets = [class_names.index(label) for label in rows["label"]]  # label -> index
        train = split == "train"
        dataset = SegmentDataset([log_mels[p] for p in positions], targets, num_frames, train,
                                 hop_frames=num_frames // 2)  # evaluation windows overlap by half
        loaders[split] = DataLoader(dataset, batch_size=batch_size, shuffle=train)
    return loaders
