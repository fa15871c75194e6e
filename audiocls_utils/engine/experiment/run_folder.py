"""The run folder: one run per folder, what defines it (run.json), and a lock while it is written.

`run.json`, written before any other file of a run, records what defines the run: the recipe
(with its feature settings), the seed, how the split was made, a fingerprint of the clips (paths,
labels, splits and a cheap signature of each file's content) and the package version. Training
into a folder that holds a run of other settings stops with one line saying what differs;
`resume` continues only a run of the same settings (a recipe stepped by StepLR may ask for more
epochs), and a finished run is left as it is.

While a run writes to its folder it holds `run.lock` (pid, host and start time), created with
O_EXCL: a second run into the same folder stops at once and names the holder. A lock whose
process no longer runs on this host (a killed run) is reported and taken over.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

import pandas as pd

from ... import __version__
from ...config import Recipe
from ...data import read_manifest_csv
from ...errors import AudioclsError
from ...files import file_signature, remove_temp_files, write_json

RUN_FILE = "run.json"
LOCK_FILE = "run.lock"
RUN_FORMAT = "audiocls-run/1"
# The files a run writes (and `clear_run` deletes): nothing else in the folder is touched.
RUN_FILES = ("run.json", "manifest.csv", "recipe.json", "history.csv", "metrics.json", "model.pt",
             "confusion_matrix.png", "checkpoints/best.pt", "checkpoints/last.pt")
FINISHED_FILES = ("metrics.json", "history.csv", "model.pt")
# What `audiocls export` writes beside model.pt by default (each with a .json sidecar).
EXPORT_FILES = ("model.onnx", "model.ts")


class Plan(Enum):
    """What a run does with its folder."""

    FRESH = "fresh"  # nothing of a run there (or `overwrite`): start from epoch 1
    RESUME = "resume"  # the same run, unfinished or asking for more epochs: go on from last.pt
    FINISHED = "finished"  # the same run, finished: nothing to do


def now() -> str:
    """Return the local time, to the second, as ISO 8601."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- what defines a run

def data_fingerprint(manifest: pd.DataFrame) -> str:
    """Return a SHA-256 of the clips a run uses: each path, label, split and content signature.

    The signature (`file_signature`: size, modification time, both ends' bytes) notices clips
    regenerated with new content at the same size, at about 0.1 ms a clip.
    """
    digest = hashlib.sha256()
    for path, label, split in sorted(zip(manifest["path"].astype(str), manifest["label"].astype(str),
                                         manifest["split"].astype(str), strict=True)):
        digest.update(f"{path}\0{label}\0{split}\0{file_signature(path)}\n".encode())
    return digest.hexdigest()


def run_record(recipe: Recipe, seed: int, split: str | None, manifest: pd.DataFrame) -> dict[str, Any]:
    """Return what defines a run, as run.json stores it (not yet finished)."""
    return {"format": RUN_FORMAT, "recipe": recipe.to_dict(), "seed": seed, "split": split,
            "data": {"fingerprint": data_fingerprint(manifest), "clips": len(manifest)},
            "audiocls": __version__, "started": now(), "finished": False}


def read_record(folder: Path) -> dict[str, Any] | None:
    """Return the folder's run.json, or None when there is none; raise if it cannot be read."""
    path = folder / RUN_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise AudioclsError(f"{path} is damaged ({type(error).__name__}); delete the folder "
                            f"{folder} or train into another --output-dir") from None
    if not isinstance(record, dict) or record.get("format") != RUN_FORMAT:
        raise AudioclsError(f"{path} is not an audiocls run record ({RUN_FORMAT}); delete the "
                            f"folder {folder} or train into another --output-dir")
    problem = record_problem(record)
    if problem:
        raise AudioclsError(f"{path} is damaged ({problem}); delete the folder {folder} or train "
                            "into another --output-dir")
    return record


def record_problem(record: dict[str, Any]) -> str | None:
    """Return the first value of a run record that is not of the kind a run writes, or None."""
    recipe, data = record.get("recipe"), record.get("data")
    expected = [("recipe", recipe, dict), ("data", data, dict), ("seed", record.get("seed"), int),
                ("finished", record.get("finished"), bool)]
    if isinstance(recipe, dict):
        expected += [("recipe.epochs", recipe.get("epochs"), int),
                     ("recipe.feature", recipe.get("feature"), dict)]
    if isinstance(data, dict):
        expected.append(("data.fingerprint", data.get("fingerprint"), str))
    kinds = {dict: "an object", int: "a whole number", str: "a string", bool: "true or false"}
    for name, value, kind in expected:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"{name} is {json.dumps(value)[:40]}, not {kinds[kind]}"
    return None


def _changed(name: str, old: Any, new: Any) -> str:
    return f"{name} {old}, not {new}"


def recipe_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Return the recipe settings that differ, as 'name old, not new' (feature settings included)."""
    if old.get("name") != new.get("name"):
        return [_changed("recipe", old.get("name"), new.get("name"))]
    flat = [{**{k: v for k, v in r.items() if k != "feature"},
             **{f"feature.{k}": v for k, v in (r.get("feature") or {}).items()}} for r in (old, new)]
    return [_changed(key, flat[0].get(key), flat[1].get(key))
            for key in dict.fromkeys([*flat[0], *flat[1]]) if flat[0].get(key) != flat[1].get(key)]


def may_add_epochs(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Return True when `new` only asks for more epochs under a schedule that ignores the count.

    StepLR's rates do not depend on the number of epochs, so the first epochs of a longer run
    are those of the shorter one; a cosine schedule's are not.
    """
    rest = [{k: v for k, v in r.items() if k != "epochs"} for r in (old, new)]
    return (rest[0] == rest[1] and new.get("schedule") == "step"
            and int(new.get("epochs", 0)) > int(old.get("epochs", 0)))


def data_differences(folder: Path, manifest: pd.DataFrame) -> str:
    """Describe how `manifest` differs from the run's manifest.csv: clips added, removed, moved."""
    try:
        used = read_manifest_csv(folder / "manifest.csv", dtype=str)
        old = dict(zip(used["path"], zip(used["label"], used["split"], strict=True), strict=True))
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        return "other data"
    new = dict(zip(manifest["path"].astype(str), zip(manifest["label"].astype(str),
                                                      manifest["split"].astype(str), strict=True),
                   strict=True))
    common = old.keys() & new.keys()
    counts = {"added": len(new.keys() - old.keys()), "removed": len(old.keys() - new.keys()),
              "relabelled": sum(old[p][0] != new[p][0] for p in common),
              "in another split": sum(old[p][1] != new[p][1] for p in common)}
    parts = [f"{count} clips {what}" for what, count in counts.items() if count]
    return f"other data ({', '.join(parts) if parts else 'the same clips, but files changed'})"


def differences(folder: Path, old: dict[str, Any], new: dict[str, Any], manifest: pd.DataFrame
                ) -> list[str]:
    """Return what differs between the run in `folder` and a run of `new`, one phrase each."""
    found = []
    if old.get("seed") != new["seed"]:
        found.append(_changed("seed", old.get("seed"), new["seed"]))
    if not may_add_epochs(old.get("recipe", {}), new["recipe"]):
        found += recipe_differences(old.get("recipe", {}), new["recipe"])
    if old.get("split") and new["split"] and old["split"] != new["split"]:
        found.append(_changed("split", old["split"], new["split"]))
    if old.get("data", {}).get("fingerprint") != new["data"]["fingerprint"]:
        found.append(data_differences(folder, manifest))
    if old.get("audiocls") != new["audiocls"]:
        found.append(_changed("audiocls", old.get("audiocls"), new["audiocls"]))
    return found


# ----------------------------------------------------------------------------- the folder's state

def holds_run(folder: Path) -> bool:
    """Return True when `folder` holds any file a run writes."""
    return any((folder / name).exists() for name in RUN_FILES)


def is_finished(folder: Path, record: dict[str, Any]) -> bool:
    """Return True when the run ended and its results are all there."""
    return bool(record.get("finished")) and all((folder / n).is_file() for n in FINISHED_FILES)


def plan_run(folder: Path, record: dict[str, Any], manifest: pd.DataFrame, resume: bool,
             overwrite: bool) -> Plan:
    """Decide what a run of `record` does with `folder`; raise, writing nothing, if it must not run.

    A folder holding another run is refused (resume or not); the same run unfinished needs
    `resume` (unless it stopped before its first checkpoint: it starts again); the same run
    finished is left as it is. `overwrite` starts afresh whatever is there.
    """
    old = None if overwrite else read_record(folder)
    if old is None:
        if overwrite or not holds_run(folder):
            return Plan.FRESH
        if [name for name in RUN_FILES if (folder / name).exists()] == ["manifest.csv"]:
            raise AudioclsError(
                f"{folder} holds a manifest.csv that no run wrote (no {RUN_FILE} beside it); "
                "train into another --output-dir, or pass --overwrite to train there (your "
                "manifest.csv is then renamed, not deleted)")
        raise AudioclsError(
            f"{folder} holds files of a run with no {RUN_FILE} (from an older audiocls or a "
            "notebook), which cannot be checked; train into another --output-dir, or pass "
            "--overwrite to replace them")
    found = differences(folder, old, record, manifest)
    if found:
        doing = "was trained with" if resume else "holds another run:"
        raise AudioclsError(f"{folder} {doing} {'; '.join(found)}. Use the same settings, "
                            "train into another --output-dir, or pass --overwrite to replace it")
    more = may_add_epochs(old["recipe"], record["recipe"])
    finished = is_finished(folder, old)
    if finished and not more:
        return Plan.FINISHED
    if not (finished or (folder / "checkpoints" / "last.pt").exists()):
        return Plan.FRESH  # stopped before its first checkpoint: nothing to lose, start again
    if not resume:
        state = "a finished run of fewer epochs" if more else "an unfinished run"
        raise AudioclsError(f"{folder} holds {state} of these settings; pass --resume to continue "
                            "it, or train into another --output-dir")
    return Plan.RESUME


def _read_json(path: Path) -> Any:
    """Return the JSON in `path`, or None when it is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def derived_files(folder: Path) -> list[Path]:
    """Return what audiocls made from the folder's model.pt: default exports with their JSON,
    and the evaluations that name it (files a user wrote are never among them)."""
    found = []
    for name in EXPORT_FILES:
        sidecar = _read_json(folder / f"{name}.json")
        if isinstance(sidecar, dict) and {"format", "class_names", "feature_config"} <= set(sidecar):
            found += [p for p in (folder / name, folder / f"{name}.json") if p.is_file()]
    for path in sorted(folder.glob("evaluation_*.json")):
        record = _read_json(path)
        if (isinstance(record, dict) and {"model", "subset", "classes"} <= set(record)
                and Path(str(record["model"])).name == "model.pt"):
            found.append(path)
    return found


def set_aside(path: Path) -> Path:
    """Rename `path` to a free name beside it (manifest.csv -> manifest.kept.csv); return it."""
    for number in range(1000):
        target = path.with_name(f"{path.stem}.kept{number or ''}{path.suffix}")
        if not target.exists():
            os.rename(path, target)
            return target
    raise AudioclsError(f"{path}: too many kept copies beside it; move them away")


def clear_run(folder: Path) -> None:
    """Delete the files a run wrote in `folder`, and what was made from its model (nothing else).

    A manifest.csv with no run.json beside it may be the user's own: it is set aside, not deleted.
    """
    manifest = folder / "manifest.csv"
    if manifest.is_file() and not (folder / RUN_FILE).exists():
        print(f"Kept {manifest} (no run.json says a run wrote it) as {set_aside(manifest)}")
    derived = derived_files(folder)
    for path in [*(folder / name for name in RUN_FILES), *derived]:
        path.unlink(missing_ok=True)
    if derived:
        print(f"Removed {', '.join(p.name for p in derived)}: made from the model being replaced")


def remove_leftovers(folder: Path) -> None:
    """Delete the temporary files an interrupted run left in `folder` and its checkpoints."""
    removed = remove_temp_files(folder) + remove_temp_files(folder / "checkpoints")
    if removed:
        print(f"Removed {len(removed)} temporary file(s) left in {folder} by an interrupted run")


def finish_run(folder: Path, record: dict[str, Any]) -> None:
    """Mark the run in `folder` finished (after its results are written)."""
    write_json(folder / RUN_FILE, {**record, "finished": True, "ended": now()})


# ----------------------------------------------------------------------------- the lock

def _process_start(pid: int) -> tuple[str, str] | None:
    """Return a Linux process's state and start time (clock ticks after boot), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], fields[19]


def process_runs(pid: int, start: str | None) -> bool:
    """Return True while process `pid` of this host runs (and is the one that started at `start`)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's process
        return True
    state = _process_start(pid)
    if state is None:  # no /proc: a live pid is all we know
        return True
    return state[0] != "Z" and (start is None or state[1] == start)  # Z: killed, not yet reaped


class RunLock:
    """Hold `<folder>/run.lock` while a run writes to `folder`: `with RunLock(folder): ...`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / LOCK_FILE
        pid = os.getpid()
        started = _process_start(pid)
        self.owner = {"pid": pid, "host": socket.gethostname(), "started": now(),
                      "process_start": started[1] if started else None}

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Create the lock file, or raise naming the run that holds it; take over a stale one."""
        make_run_folder(self.folder)
        for _ in range(5):  # a stale lock taken over, or one released meanwhile: try again
            try:
                handle = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._check_holder()
                continue
            except OSError as error:
                raise AudioclsError(f"Cannot write in the run folder {self.folder} "
                                    f"({error.strerror}); choose a writable --output-dir") from None
            with os.fdopen(handle, "w") as file:
                json.dump(self.owner, file)
            return
        raise AudioclsError(f"{self.path} keeps changing hands; is another run starting? Try again")

    def _check_holder(self) -> None:
        """Raise naming the holder of the lock, unless it is gone or stale (then remove it)."""
        holder = read_lock(self.path)
        if holder is None:
            return  # released meanwhile
        pid, host = holder.get("pid"), holder.get("host")
        stale = (isinstance(pid, int) and pid > 0 and host == self.owner["host"]
                 and not process_runs(pid, holder.get("process_start")))
        if not stale:
            who = (f"pid {pid} on {host}, since {holder.get('started')}" if isinstance(pid, int)
                   else "a run that is just starting")
            raise AudioclsError(
                f"{self.folder} is in use by another run ({who}); wait for it to end or train "
                f"into another --output-dir (delete {self.path} only if no run is going on)")
        if self._remove_if_unchanged(holder):
            print(f"Taking over {self.path}: the run that held it (pid {pid}, since "
                  f"{holder.get('started')}) no longer runs")

    def _remove_if_unchanged(self, holder: dict[str, Any]) -> bool:
        """Remove the lock if it still holds `holder` (two runs may both find it stale)."""
        aside = self.path.with_name(f".{LOCK_FILE}.{os.getpid()}.stale")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False  # another run took it over first
        if read_lock(aside) == holder:
            aside.unlink()
            return True
        try:  # a fresh lock of another run, moved aside by mistake: put it back
            os.link(aside, self.path)
        except FileExistsError:
            pass
        aside.unlink()
        return False

    def release(self) -> None:
        """Remove the lock file if it is still this run's."""
        if read_lock(self.path) == self.owner:
            self.path.unlink(missing_ok=True)


def read_lock(path: Path) -> dict[str, Any] | None:
    """Return the holder a lock file names ({} while it is being written), or None if it is gone."""
    try:
        holder = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def make_run_folder(folder: Path) -> None:
    """Create the run folder, or raise in one line if it cannot be."""
    if folder.exists() and not folder.is_dir():
        raise AudioclsError(f"--output-dir {folder} is a file, not a folder; choose another path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AudioclsError(f"Cannot create the run folder {folder} ({error.strerror}); choose "
                            "a writable --output-dir") from None
