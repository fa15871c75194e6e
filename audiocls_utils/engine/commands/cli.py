"""The `audiocls` command line: synth, download, prepare, train, evaluate, predict, export,
dashboard, app."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...errors import AudioclsError


def _progress() -> bool:
    """Return True when progress bars help: an interactive terminal, not a CI log."""
    return sys.stderr.isatty() and not os.environ.get("CI")


# ----------------------------------------------------------------------------- settings
# Every command checks its settings here before it starts any long work (decoding, training).

# The option naming where each command writes (a fault with no file name names it instead).
OUTPUTS = {"synth": "out", "download": "dest", "prepare": "out", "train": "output_dir",
           "evaluate": "out", "export": "out"}
# Commands whose output option names one file, with an example name for it.
FILE_EXAMPLES = {"prepare": "manifest.csv", "evaluate": "evaluation_test.json",
                 "export": "model.onnx"}


def _flag(option: str) -> str:
    """Return the command-line spelling of an argparse destination: output_dir -> --output-dir."""
    return "--" + option.replace("_", "-")


MAX_SEED = 2**32 - 1  # the largest seed np.random.seed takes


def available_cores() -> int:
    """Return the CPU cores this process may run on (its affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cap_workers(args: argparse.Namespace) -> None:
    """Lower --workers to the cores this process may use, saying so: more only wait their turn."""
    cores = available_cores()
    if getattr(args, "workers", None) is not None and args.workers > cores:
        print(f"Note: --workers {args.workers} is more than the {cores} CPU core(s) here; using "
              f"{cores}")
        args.workers = cores


def validate_device(text: str) -> str:
    """Return the device `text` names (e.g. `cuda:0`) if this machine has it; else raise."""
    from ...devices import check_device

    return str(check_device(text, "--device"))


def check_output(path: str | Path, option: str, example: str | None = None) -> None:
    """Stop unless `path` can be written: a folder (made if missing), or with `example` a file."""
    path = Path(path).expanduser()
    shown = f"{_flag(option)} {path}"
    if example is None and path.is_file():
        raise AudioclsError(f"{shown} is a file, not a folder: name a folder (it is made if "
                            "missing), or move the file away")
    if example is not None and path.is_dir():
        raise AudioclsError(f"{shown} is a folder: name the file to write, e.g. {path / example}")
    folder = next(p for p in (path if example is None else path.parent, *path.parents)
                  if p.exists())  # `.` or `/` at the latest
    if not folder.is_dir():
        raise AudioclsError(f"{shown}: {folder} is a file, so nothing can be written below it; "
                            "choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        why = ("read-only file system" if os.statvfs(folder).f_flag & os.ST_RDONLY
               else "no write permission")
        raise AudioclsError(f"{shown}: cannot write in {folder} ({why}); choose a folder you can "
                            "write to")


def evaluation_path(args: argparse.Namespace) -> Path:
    """Return the JSON `evaluate` writes: --out, else one beside the model named for the subset,
    split and seed (evaluation_test_random-seed7.json), so no seed's evaluation replaces another's."""
    if args.out:
        return Path(args.out)
    split = args.split or "random"
    seeded = f"{split}-seed{args.seed}" if split in ("random", "group") else split
    return Path(args.model).with_name(f"evaluation_{args.subset}_{seeded}.json")


def written_files(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """Return the files the command writes, each with the option that chooses it."""
    from ..experiment.run_folder import RUN_FILES
    from .export import export_paths

    if args.command == "prepare":
        return [("--out", Path(args.out))]
    if args.command == "evaluate":
        return [("--out", evaluation_path(args))]
    if args.command == "export":
        return [("--out", path) for path in export_paths(args.model, args.format, args.out)]
    if args.command == "train":
        return [("--output-dir", Path(args.output_dir) / name) for name in RUN_FILES]
    return []


def read_files(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """Return the files the command reads (model, manifest, labels, groups.csv), each named."""
    from ...data import GROUPS_FILE, find_data_root

    found = [(_flag(option), Path(getattr(args, option))) for option in ("model", "manifest", "labels")
             if getattr(args, option, None)]
    if getattr(args, "data_dir", None) and not getattr(args, "labels", None):
        found.append(("groups file", find_data_root(args.data_dir) / GROUPS_FILE))
    return found


def _clip_of(path: Path, data_dir: str | None) -> bool:
    """Return True when `path` is an audio file below the data folder: one of the clips read."""
    from ...audio import is_audio_path
    from ...data import find_data_root

    if not (data_dir and path.is_file() and is_audio_path(path)):
        return False
    return path.resolve().is_relative_to(find_data_root(data_dir).resolve())


def check_outputs_not_inputs(args: argparse.Namespace) -> None:
    """Stop when a file the command would write is one it reads (the same path, or a link to it)."""
    from ...files import same_file

    sources = read_files(args)
    for option, output in written_files(args):
        for name, source in sources:
            if same_file(output, source):
                raise AudioclsError(f"{option} {output} is also an input ({name} {source}): "
                                    "writing would destroy it; choose another output path")
        if _clip_of(output, getattr(args, "data_dir", None)):
            raise AudioclsError(f"{option} {output} is also an input (a clip of --data-dir "
                                f"{args.data_dir}): writing would destroy it; choose another "
                                "output path")


def _check_data_tables(args: argparse.Namespace) -> None:
    """Check the CSV tables a command will read: --manifest, --labels, the data folder's groups."""
    from ...data import GROUPS_FILE, check_table, find_data_root

    if getattr(args, "manifest", None):
        check_table(args.manifest, "Manifest", ("path", "label", "split", "duration"),
                    numeric=("duration",))
    if getattr(args, "labels", None):
        check_table(args.labels, "Labels file", ("path", "label"))
    elif getattr(args, "data_dir", None):
        groups = find_data_root(args.data_dir) / GROUPS_FILE
        if groups.exists():
            check_table(groups, "Groups file", ("path", "group"), filled=("path",))


def check_manifest_alone(args: argparse.Namespace) -> None:
    """Stop when --manifest comes with options it overrides; then give --split its default."""
    if getattr(args, "manifest", None):
        ignored = [_flag(option) for option in ("data_dir", "labels", "label_pattern", "split")
                   if getattr(args, option, None)]
        if ignored:
            raise AudioclsError(f"--manifest {args.manifest} already lists the clips, labels and "
                                f"splits, so {' and '.join(ignored)} would be ignored: drop "
                                f"{'them' if len(ignored) > 1 else 'it'}, or drop --manifest to "
                                "build them from --data-dir")
    if hasattr(args, "split") and args.split is None:
        args.split = "random"


def validate_settings(args: argparse.Namespace) -> None:
    """Check every setting of the command before any long work starts; raise on the first bad one."""
    from ...predict import model_file
    from ..experiment.tracking import resolve_mode

    if getattr(args, "model", None):  # a run folder stands for its model.pt
        args.model = str(model_file(args.model))
    if getattr(args, "device", None):
        args.device = validate_device(args.device)
    if getattr(args, "workers", None) is not None and args.workers < 0:
        raise AudioclsError(f"--workers {args.workers} is negative: give 0 (decode in this "
                            "process) or more worker processes, or leave it out")
    if getattr(args, "seed", None) is not None and args.seed < 0:
        raise AudioclsError(f"--seed {args.seed} is negative: give a whole number 0 or above")
    if getattr(args, "seed", None) is not None and args.seed > MAX_SEED:
        raise AudioclsError(f"--seed {args.seed} is too large for NumPy's generator: give a "
                            f"whole number from 0 to {MAX_SEED}")
    cap_workers(args)
    if args.command == "train":
        resolve_mode(args.tracking)
    check_manifest_alone(args)
    if getattr(args, "label_pattern", None):
        from ...data import compile_label_pattern

        compile_label_pattern(args.label_pattern)
    output = getattr(args, OUTPUTS.get(args.command, ""), None)
    if output is not None:
        check_output(output, OUTPUTS[args.command], FILE_EXAMPLES.get(args.command))
    if getattr(args, "cache_dir", None):
        check_output(args.cache_dir, "cache_dir")
    check_outputs_not_inputs(args)
    if hasattr(args, "no_reject"):
        check_reject_flags(args)
    if args.command in ("dashboard", "app"):
        if not 0 < args.port < 65536:
            raise AudioclsError(f"--port {args.port} is not a TCP port: choose 1024 to 65535")
        if getattr(args, "log_dir", None):
            from .dashboard import check_log_dir

            check_log_dir(args.log_dir)
    _check_data_tables(args)


def describe_os_error(error: OSError, where: str | None = None) -> str:
    """Return one line for a failed read or write: the file, what went wrong, what to do.

    `where` names the output option for errors that carry no file name (a full disk met while
    writing a file's data).
    """
    import errno

    name = error.filename or where or "a file"
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on the disk while writing {name}: free some space (or choose "
                "another folder) and run the command again; files already written are complete")
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write {name} ({reason}): choose a folder you can write to"
    if error.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
        return f"{name}: {reason}: a file stands where a folder is needed; choose another path"
    return f"{name}: {reason}"


def cmd_synth(args: argparse.Namespace) -> None:
    """Generate the built-in synthetic dataset."""
    from ..synth import generate_dataset

    try:
        root = generate_dataset(args.out, clips_per_class=args.clips_per_class,
                                seconds=args.seconds, seed=args.seed,
                                difficulty=args.difficulty,
                                artists_per_class=args.artists_per_class, replace=args.replace,
                                progress=_progress())
    except (ValueError, FileExistsError) as error:
        raise AudioclsError(str(error)) from None
    print(f"Synthetic dataset in {root}")


def cmd_download(args: argparse.Namespace) -> None:
    """Download a dataset archive, verify it, extract it safely and say what to run next."""
    import posixpath
    import re
    import urllib.parse

    from ...data import course_root
    from ...gtzan import DEFAULT_SOURCE, SOURCES
    from .download import ARCHIVE_SUFFIXES, check_url

    fsdd = args.dataset == "fsdd"
    if fsdd:
        from ... import fsdd as facts
    url = args.url or (facts.URL if fsdd else SOURCES[DEFAULT_SOURCE].url)
    check_url(url)
    if args.sha256 and not re.fullmatch(r"[0-9a-fA-F]{64}", args.sha256):
        raise AudioclsError(f"--sha256 {args.sha256!r} is not a SHA-256 (64 hex digits)")
    name = posixpath.basename(urllib.parse.urlparse(url).path)
    if not name.endswith(ARCHIVE_SUFFIXES):
        raise AudioclsError(f"{url} does not name a {', '.join(ARCHIVE_SUFFIXES)} archive")
    if fsdd:
        dest = Path(args.dest) if args.dest else course_root() / facts.DATA_DIR
        _download_fsdd(url, name, dest, args.sha256)
    else:
        _download_gtzan(url, name, args)


def _download_gtzan(url: str, name: str, args: argparse.Namespace) -> None:
    """Download GTZAN's archive (SHA-256 checked where known), extract it, say what next."""
    from ...data import course_root, find_data_root
    from ...gtzan import DATA_DIR, find_gtzan, known_sha256
    from .download import download, extract_archive, missing_members

    sha256 = args.sha256 or known_sha256(url)
    if sha256 is None:
        print(f"Note: no --sha256 given and none is known for {url}; the archive's integrity "
              "cannot be checked")
    dest = Path(args.dest) if args.dest else course_root() / DATA_DIR
    archive = download(url, dest / name, sha256=sha256, progress=_progress())
    if dest.is_dir() and find_data_root(dest) != dest:
        missing = missing_members(archive, dest)
        if missing:
            raise AudioclsError(f"{find_data_root(dest)} lacks {len(missing)} of the files in "
                                f"{archive} (e.g. {missing[0]}), so it is no complete copy "
                                "of it; delete it (or choose another --dest) to extract again")
        print(f"{find_data_root(dest)} is already extracted; delete it to extract again")
    else:
        print(f"Extracting {archive} into {dest}")
        extract_archive(archive, dest)
    root = find_data_root(dest)
    chapters = find_gtzan(course_root())
    if chapters is not None and chapters.resolve() == dest.resolve():
        found = "the chapters will find it there"
    else:
        found = (f"the chapters look in {course_root() / DATA_DIR}: move it there, or set "
                 f"AUDIOCLS_DATA={dest.resolve()}")
    print(f"GTZAN is in {root} (you may delete {archive}); {found}. Next, on the command line:\n"
          f"  audiocls prepare --data-dir {dest} --out {dest / 'manifest.csv'} --split filtered")


def _download_fsdd(url: str, name: str, dest: Path, sha256: str | None) -> Path:
    """Put FSDD's recordings in DEST/recordings, checked against the pinned content digest.

    The archive is checked by its SHA-256 only when --sha256 is given (GitHub regenerates its
    archives, so their bytes are not pinned); the recordings always are: extracted into a
    temporary folder, they are moved into place only when their digest is the one pinned
    (`fsdd.RECORDINGS_DIGEST`, which tests replace with their small archive's). Recordings
    already in place are checked the same way and nothing is downloaded.
    """
    from ... import fsdd as facts
    from .download import ARCHIVE_SUFFIXES, download, extract_archive

    digest = facts.RECORDINGS_DIGEST

    def check(folders: list[Path]) -> None:
        found, count = facts.recordings_digest(folders[0])
        if found != digest:
            archive.unlink()  # as a wrong SHA-256 deletes a download: the next run fetches again
            raise AudioclsError(
                f"the {count} recordings in {url} do not match FSDD at commit "
                f"{facts.COMMIT[:7]} (content digest {found[:12]}..., expected "
                f"{digest[:12]}...): another version, or damaged; nothing was extracted and the "
                "download was deleted. Check the URL (leave --url out for the pinned commit)")

    recordings = dest / facts.RECORDINGS
    if recordings.exists():
        found, count = facts.recordings_digest(recordings)
        if found != digest:
            raise AudioclsError(f"{recordings} exists but its {count} file(s) are not FSDD's "
                                f"recordings at commit {facts.COMMIT[:7]}: delete it (or choose "
                                "another --dest) to download again")
        print(f"{recordings} holds FSDD's {count} recordings (content verified)")
    else:
        suffix = next(s for s in ARCHIVE_SUFFIXES if name.endswith(s))
        archive = download(url, dest / f"fsdd{suffix}", sha256=sha256, progress=_progress())
        print(f"Extracting the recordings of {archive} into {dest}")
        extract_archive(archive, dest, pick=f"*/{facts.RECORDINGS}", check=check)
        print(f"{recordings} holds FSDD's {facts.recordings_digest(recordings)[1]} recordings "
              f"(content verified; you may delete {archive})")
    print(f"Next: audiocls prepare --data-dir {recordings} --label-pattern fsdd --split group "
          f"--out {dest / 'manifest.csv'}   (or AUDIOCLS_DATA={recordings.resolve()} for the "
          "chapters)")
    return recordings


def _manifest_with_splits(args: argparse.Namespace):  # noqa: ANN202 - pandas type
    """Build the manifest of --data-dir, report exclusions, and add the --split column."""
    from ...data import build_manifest, make_splits, manifest_notes

    manifest, excluded = build_manifest(args.data_dir, label_pattern=args.label_pattern,
                                        progress=_progress(), labels_csv=args.labels,
                                        allow_similar_labels=args.allow_similar_labels)
    for item in excluded:
        print(f"Excluded {item}")
    for note in manifest_notes(manifest):
        print(f"Note: {note}")
    return make_splits(manifest, args.split, seed=args.seed), excluded


def cmd_prepare(args: argparse.Namespace) -> None:
    """Write the manifest with a split column and print the class counts."""
    from ...data import check_splits, save_manifest

    manifest, excluded = _manifest_with_splits(args)
    save_manifest(manifest, args.out)
    counts = manifest.groupby(["label", "split"]).size().unstack(fill_value=0)
    print(counts.reindex(columns=[c for c in ("train", "val", "test") if c in counts]).to_string())
    for warning in check_splits(manifest):
        print(f"Warning: {warning}")
    print(f"{len(manifest)} clips in {manifest['label'].nunique()} classes, {len(excluded)} "
          f"excluded; manifest written to {args.out}")


def cmd_train(args: argparse.Namespace) -> None:
    """Train a recipe and write metrics.json, model.pt and history.csv (DDP under torchrun)."""
    from ...config import apply_profile, get_recipe
    from ...data import check_labels, load_manifest, make_splits
    from ...devices import machine_profile, pick_device
    from ..experiment.distributed import quiet_unless_main
    from ..experiment.runner import run_experiment

    with quiet_unless_main():
        device = pick_device(args.device)
        profile, why = (args.profile, "--profile") if args.profile else machine_profile(device)
        recipe = apply_profile(get_recipe(args.recipe), profile)
        if args.manifest:
            manifest = make_splits(load_manifest(args.manifest), "existing")
            check_labels(manifest, args.allow_similar_labels)  # as prepare checks them
        else:
            manifest, _ = _manifest_with_splits(args)
        print(f"Profile {profile} ({why}); {len(manifest)} clips; output in {args.output_dir}")
        result = run_experiment(
            manifest, recipe, args.output_dir, device=device, seed=args.seed,
            tracking_mode=args.tracking, progress=_progress(), resume=args.resume,
            num_workers=args.workers, cache=False if args.no_cache else (args.cache_dir or True),
            amp=not args.no_amp, channels_last=False if args.no_channels_last else None,
            pin_memory=False if args.no_pin_memory else None,
            split="existing" if args.manifest else args.split, overwrite=args.overwrite,
        )
        test = result.metrics.get("test")
        if test:
            print(f"Test accuracy {test['accuracy']:.3f}, macro-F1 {test['macro_f1']:.3f} "
                  f"({test['num_clips']} clips)")
        else:
            print(no_test_note(result.metrics))
        rejection = result.metrics.get("rejection") or {}
        if rejection.get("threshold") is not None:
            rejected = rejection.get("test_rejected")
            print(f"Clips with a top probability below {rejection['threshold']:.2f} (calibrated on "
                  "validation) are predicted as unknown" + (f": {rejected:.0%} of the test clips"
                                                           if rejected is not None else ""))
        if result.trained:  # else the runner said the folder holds this run, finished
            print(f"Wrote {args.output_dir}/metrics.json, model.pt, history.csv")


def no_test_note(metrics: dict[str, Any]) -> str:
    """Say why a run without test clips reports no result, and what chose its model."""
    if metrics.get("val"):  # None when there were no validation clips
        return ("No test set in this split, so no result to report: the validation figures "
                "chose the model and overstate its accuracy")
    return ("No test or validation set in this split, so no result to report: the model is the "
            "last epoch's; measure it on clips it never saw (`audiocls evaluate`)")


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Score a saved model on a split of a dataset (clip level) and write the metrics as JSON."""
    from ...files import write_json
    from ...metrics import classification_metrics, format_confusion_matrix, format_report
    from ...predict import Predictor

    predictor = Predictor.from_file(args.model, device=args.device)
    manifest, _ = _manifest_with_splits(args)
    rows = manifest if args.subset == "all" else manifest[manifest["split"] == args.subset]
    unknown = sorted(set(rows["label"]) - set(predictor.class_names))
    if unknown:
        raise AudioclsError(f"Labels {unknown} are not among the model's classes "
                            f"{predictor.class_names}")
    if rows.empty:
        raise AudioclsError(f"The {args.subset} split of --split {args.split} is empty (no "
                            f"{args.subset} set); choose another with --subset")
    trained_on = _warn_if_trained_on(rows, Path(args.model))
    probabilities = predictor.probabilities(rows["path"].tolist())
    targets = [predictor.class_names.index(label) for label in rows["label"]]
    metrics = classification_metrics(targets, probabilities.argmax(1).tolist(),
                                     predictor.class_names)
    print(format_report(metrics, predictor.class_names))
    print(format_confusion_matrix(metrics["confusion_matrix"], predictor.class_names))
    out = evaluation_path(args)
    write_json(out, {"model": str(args.model), "data_dir": str(args.data_dir),
                     "split": args.split, "seed": args.seed, "subset": args.subset,
                     "clips_that_trained_the_model": trained_on,
                     "classes": predictor.class_names, **metrics})
    print(f"Wrote {out}")


def _warn_if_trained_on(rows, model: Path) -> int | None:  # noqa: ANN001 - pandas type
    """Warn when clips being scored trained the model (its run's manifest.csv says so); return
    how many did (None: no manifest.csv beside the model to tell)."""
    from ...data import read_manifest_csv

    run_manifest = model.with_name("manifest.csv")
    if not run_manifest.exists():
        return None
    trained = read_manifest_csv(run_manifest, usecols=["path", "split"], dtype=str)
    seen = set(trained.loc[trained["split"] == "train", "path"])
    overlap = int(rows["path"].isin(seen).sum())
    if overlap:
        print(f"Warning: {overlap} of these {len(rows)} clips trained this model ({run_manifest} "
              "says so): evaluate with the --split and --seed it was trained with")
    return overlap


def cmd_predict(args: argparse.Namespace) -> None:
    """Print each file's top-k labels as soon as it is done (on stderr, why a file has none).

    With --json the output is one JSON array, each file's object printed as it is done; on
    Ctrl-C the array is closed, so what was printed stays a valid document.
    """
    from ...predict import check_top_k

    check_top_k(args.top_k)  # before any work
    predictor = load_predictor(args)
    done = failed = 0
    labelled = False
    if args.json:
        print("[", flush=True)
    try:
        for result in predictor.each_prediction(args.files, args.top_k):
            if result.get("reason") == "low confidence":
                result["threshold"] = predictor.threshold
            if "error" not in result and not labelled:  # once the model has worked
                labelled = note_no_threshold(args, predictor)
            if args.json:  # failures are in it too, as {"path", "error"}
                print(("," if done else "") + json.dumps(result), flush=True)
            else:
                _print_prediction(result)
            done, failed = done + 1, failed + ("error" in result)
    except KeyboardInterrupt:
        print(f"audiocls predict: {done} of {len(args.files)} file(s) done before the interrupt "
              "(printed above)", file=sys.stderr)
        raise
    finally:
        if args.json:
            print("]", flush=True)
    if failed:
        raise AudioclsError(f"{failed} of {done} file(s) could not be labelled (each is "
                            "named above with the reason); the others were")


def check_reject_flags(args: argparse.Namespace) -> None:
    """Stop when --threshold is no probability, or comes with --no-reject."""
    from ...predict import check_threshold

    if args.threshold is not None and args.no_reject:
        raise AudioclsError(f"--threshold {args.threshold:g} and --no-reject contradict each "
                            "other: drop one")
    check_threshold(args.threshold, "--threshold")


def load_predictor(args: argparse.Namespace):  # noqa: ANN201 - a Predictor
    """Load --model with the rejection that --no-reject and --threshold ask for."""
    from ...predict import Predictor

    return Predictor.from_file(args.model, device=args.device, reject=not args.no_reject,
                               threshold=args.threshold)


def note_no_threshold(args: argparse.Namespace, predictor: Any) -> bool:
    """Say (on stderr, one line) when the model has no threshold of its own (saved before
    audiocls calibrated one), so no clip is rejected for low confidence; return True."""
    if predictor.reject and predictor.threshold is None:
        print(f"audiocls {args.command}: note: {args.model} has no reject threshold (saved before "
              "audiocls calibrated one), so rejection of unsure clips is off (silent ones are "
              "still unknown); retrain it, or pass --threshold P", file=sys.stderr, flush=True)
    return True


def _print_prediction(result: dict[str, Any]) -> None:
    """Print one file's labels on stdout, or why it has none on stderr, at once.

    A clip the model abstains on is printed as `unknown`, with why and its top class.
    """
    from ...data import printable

    path = printable(Path(result["path"]))
    if "error" in result:
        print(f"{path}: not labelled: {result['error']}", file=sys.stderr, flush=True)
        return
    ranked = ", ".join(f"{t['label']} {t['probability']:.2f}" for t in result["top"])
    if result.get("reason") == "silence":
        ranked = f"unknown (silence, {result['loudness_db']:.0f} dBFS; best guess {ranked})"
    elif result.get("reason"):
        ranked = (f"unknown ({result['reason']}: below the threshold {result['threshold']:.2f}; "
                  f"best guess {ranked})")
    print(f"{path}: {ranked}", flush=True)


def cmd_app(args: argparse.Namespace) -> None:
    """Serve the Gradio page of a saved model on --host:--port until Ctrl+C."""
    from .app import build_app, import_gradio
    from .dashboard import check_port_free

    import_gradio()  # the missing extra is the first thing to say, before loading the model
    check_port_free(args.host, args.port, "app")
    predictor = load_predictor(args)
    note_no_threshold(args, predictor)
    page = build_app(predictor)
    print(f"audiocls app for {args.model}: open http://{args.host}:{args.port}"
          + (" (and the public link Gradio prints)" if args.share else "") + " (Ctrl+C stops)",
          flush=True)
    page.launch(server_name=args.host, server_port=args.port, share=args.share, quiet=True,
                max_file_size="1gb", show_error=False)


def cmd_export(args: argparse.Namespace) -> None:
    """Export a saved model to TorchScript or ONNX."""
    from .export import export_model

    out = export_model(args.model, args.format, args.out)
    print(f"Wrote {out} (input: log-Mel segments; see {out}.json)")


def cmd_dashboard(args: argparse.Namespace) -> None:
    """Serve the SwanLab dashboard of the course's runs on localhost until Ctrl+C."""
    import subprocess

    from .dashboard import check_log_dir, check_port_free, find_log_dir

    log_dir = check_log_dir(args.log_dir) if args.log_dir else find_log_dir(args.search)
    check_port_free(args.host, args.port)  # else swanlab serves on another port than printed
    print(f"SwanLab dashboard for {log_dir}: open http://{args.host}:{args.port} (Ctrl+C stops)")
    status = subprocess.run([sys.executable, "-m", "swanlab", "watch", str(log_dir), "--host",
                             args.host, "--port", str(args.port)], check=False).returncode
    if status:
        raise AudioclsError(f"swanlab watch stopped with status {status} (its message is above): "
                            f"is port {args.port} taken? Choose another with --port")


EXAMPLES = {
    "synth": "audiocls synth --out data/synth --clips-per-class 30 --seconds 6",
    "download": "audiocls download gtzan   # or fsdd; into data/gtzan (data/fsdd), where the "
                "chapters look",
    "prepare": "audiocls prepare --data-dir data/synth --out data/manifest.csv --split group",
    "train": "audiocls train --data-dir data/synth --recipe baseline --profile cpu "
             "--output-dir runs/baseline",
    "evaluate": "audiocls evaluate --model runs/baseline/model.pt --data-dir data/synth",
    "predict": "audiocls predict --model runs/baseline/model.pt song.wav --top-k 3",
    "export": "audiocls export --model runs/baseline/model.pt --format onnx",
    "dashboard": "audiocls dashboard --log-dir outputs/demo/swanlog --port 5092",
    "app": "audiocls app --model runs/baseline   # http://127.0.0.1:7860; needs the app extra",
}


def _add_data_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """Add --data-dir, --label-pattern, --split and --seed."""
    parser.add_argument("--data-dir", required=required,
                        help="folder with one sub-folder per class (GTZAN layouts are found)")
    parser.add_argument("--label-pattern", default=None,
                        help="read labels from file names: 'fsdd' or a regex with (?P<label>...)")
    parser.add_argument("--labels", default=None,
                        help="CSV with columns path,label[,group] (paths relative to --data-dir)")
    parser.add_argument("--split", default=None, choices=["random", "group", "filtered"],
                        help="random (default): per-class stratified (seed 42); group: no speaker/artist "
                             "in two splits; filtered: GTZAN's artist-filtered split (Kereliuk "
                             "et al. 2015)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--allow-similar-labels", action="store_true",
                        help="keep labels that look like typos of each other (tree and three)")


def _synth_arguments(synth: argparse.ArgumentParser) -> None:
    synth.add_argument("--out", required=True, help="folder to create (genres/ goes inside)")
    synth.add_argument("--clips-per-class", type=int, default=20)
    synth.add_argument("--seconds", type=float, default=5.0)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--difficulty", type=float, default=0.5, help="0 easy ... 1 hard")
    synth.add_argument("--artists-per-class", type=int, default=4,
                       help="artists per genre; --split group keeps each artist in one split")
    synth.add_argument("--replace", action="store_true",
                       help="delete a synthetic set made with other settings in --out first")


def _download_arguments(fetch: argparse.ArgumentParser) -> None:
    fetch.add_argument("dataset", choices=["gtzan", "fsdd"])
    fetch.add_argument("--dest", default=None,
                       help="folder to download and extract into (default: data/gtzan or "
                            "data/fsdd in the course folder, where the chapters look)")
    fetch.add_argument("--url", default=None,
                       help="archive URL: another mirror, or file:///path/to/genres.tar.gz "
                            "downloaded by hand (default: GTZAN's Hugging Face copy; FSDD's "
                            "GitHub archive at a pinned commit)")
    fetch.add_argument("--sha256", default=None,
                       help="expected SHA-256 of the archive (known for GTZAN's default URLs; "
                            "FSDD's recordings are always checked against a pinned digest)")


def _prepare_arguments(prepare: argparse.ArgumentParser) -> None:
    _add_data_arguments(prepare)
    prepare.add_argument("--out", required=True, help="manifest CSV to write")


def _train_arguments(train: argparse.ArgumentParser) -> None:
    _add_data_arguments(train, required=False)
    train.add_argument("--manifest", help="use this manifest (with its split) instead of --data-dir")
    train.add_argument("--recipe", default="baseline",
                       help="course, baseline, advanced, original-baseline or original-advanced "
                            "(seed-baseline and seed-advanced still work)")
    train.add_argument("--profile", choices=["smoke", "cpu", "gpu16", "full"], default=None,
                       help="full: the recipe as written (a large GPU); gpu16: in batches of 8 "
                            "(a 16 GB GPU); cpu: minutes on a laptop; smoke: seconds (default: the "
                            "one that fits this machine's GPU memory, printed with the reason)")
    train.add_argument("--output-dir", required=True)
    train.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    train.add_argument("--tracking", default=None,
                       help="SwanLab mode: offline (default: saved for `swanlab sync`), online, "
                            "local (the older local dashboard) or disabled")
    train.add_argument("--resume", action="store_true",
                       help="continue from OUTPUT_DIR/checkpoints/last.pt (the same settings only)")
    train.add_argument("--overwrite", action="store_true",
                       help="delete the run files OUTPUT_DIR holds (another run's) and train afresh")
    speed = train.add_argument_group(
        "speed", "all on by default; for several GPUs, launch with "
                 "`torchrun --nproc_per_node=N -m audiocls_utils train ...`")
    speed.add_argument("--cache-dir", default=None,
                       help="feature cache folder (default: $AUDIOCLS_CACHE, else "
                            "~/.cache/audiocls/features)")
    speed.add_argument("--no-cache", action="store_true",
                       help="compute log-Mels every run and keep them in RAM")
    speed.add_argument("--workers", type=int, default=None,
                       help="log-Mel threads on a CPU (worker processes that decode for a GPU) "
                            "and DataLoader workers (default: by CPU count)")
    speed.add_argument("--no-amp", action="store_true", help="no bf16/fp16 autocast on CUDA")
    speed.add_argument("--no-channels-last", action="store_true",
                       help="keep NCHW tensors on CUDA")
    speed.add_argument("--no-pin-memory", action="store_true",
                       help="no pinned host memory for CUDA copies")


def _evaluate_arguments(evaluate: argparse.ArgumentParser) -> None:
    evaluate.add_argument("--model", required=True)
    _add_data_arguments(evaluate)
    evaluate.add_argument("--subset", default="test", choices=["train", "val", "test", "all"])
    evaluate.add_argument("--out", default=None, help="JSON to write (default: beside the model)")
    evaluate.add_argument("--device", default=None)


def _predict_arguments(predict: argparse.ArgumentParser) -> None:
    predict.add_argument("--model", required=True)
    predict.add_argument("files", nargs="+")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--json", action="store_true", help="print JSON instead of text")
    predict.add_argument("--device", default=None)
    _add_reject_arguments(predict)


def _export_arguments(export: argparse.ArgumentParser) -> None:
    export.add_argument("--model", required=True)
    export.add_argument("--format", required=True, choices=["torchscript", "onnx"])
    export.add_argument("--out", default=None, help="file to write (default: beside the model)")


def _dashboard_arguments(dashboard: argparse.ArgumentParser) -> None:
    dashboard.add_argument("--log-dir", default=None,
                           help="a swanlog folder (default: the newest one under --search)")
    dashboard.add_argument("--search", default="outputs", help="where to look for swanlog folders")
    dashboard.add_argument("--host", default="127.0.0.1")
    dashboard.add_argument("--port", type=int, default=5092)



def _app_arguments(app: argparse.ArgumentParser) -> None:
    app.add_argument("--model", required=True, help="a model.pt, or the run folder holding it")
    app.add_argument("--host", default="127.0.0.1",
                     help="address to serve on (default: this machine only)")
    app.add_argument("--port", type=int, default=7860)
    app.add_argument("--share", action="store_true",
                     help="also serve through a public gradio.live link (off by default)")
    app.add_argument("--device", default=None)
    _add_reject_arguments(app)


# name: (what it does, its arguments, what runs it); the order of `audiocls --help`.
COMMANDS = {
    "synth": ("Generate the built-in synthetic GTZAN-shaped dataset.", _synth_arguments, cmd_synth),
    "download": ("Download a dataset archive (resumable, verified) and extract it.",
                 _download_arguments, cmd_download),
    "prepare": ("Check every clip and write the manifest with a split column.", _prepare_arguments,
                cmd_prepare),
    "train": ("Train a recipe; writes metrics.json, model.pt and history.csv.", _train_arguments,
              cmd_train),
    "evaluate": ("Score a saved model on a dataset split (clip level).", _evaluate_arguments,
                 cmd_evaluate),
    "predict": ("Print the most likely labels of audio files of any length.", _predict_arguments,
                cmd_predict),
    "export": ("Export a saved model to TorchScript or ONNX.", _export_arguments, cmd_export),
    "dashboard": ("Serve the SwanLab dashboard of local runs (no account).", _dashboard_arguments,
                  cmd_dashboard),
    "app": ("Serve a page to classify an uploaded or recorded clip (Gradio).", _app_arguments,
            cmd_app),
}


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with one sub-command per step (see COMMANDS)."""
    parser = argparse.ArgumentParser(
        prog="audiocls", description="Audio classification with log-Mel spectrograms and CNNs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES.values()),
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        command = commands.add_parser(name, help=help_text, description=help_text,
                                      formatter_class=argparse.RawDescriptionHelpFormatter,
                                      epilog=textwrap.dedent(f"example:\n  {EXAMPLES[name]}"))
        add_arguments(command)
        command.set_defaults(run=run)
    return parser


def _add_reject_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --no-reject and --threshold (predict and app)."""
    parser.add_argument("--no-reject", action="store_true",
                        help="always give the top class: never answer unknown")
    parser.add_argument("--threshold", type=float, default=None, metavar="P",
                        help="answer unknown below this top probability (default: the threshold "
                             "calibrated on the validation set and saved with the model)")


@contextmanager
def one_line_warnings(command: str) -> Iterator[None]:
    """Print each warning inside the block as one line (Python's default adds a source line)."""
    saved = warnings.formatwarning
    warnings.formatwarning = lambda message, *_, **__: f"audiocls {command}: warning: {message}\n"
    try:
        yield
    finally:
        warnings.formatwarning = saved


class ReaderMayLeave:
    """Stand in for stdout: once its reader has gone (`| head -2`), drop what is printed.

    The command goes on and finishes its work (a manifest is written whole); only the
    printing stops, which is no error.
    """

    def __init__(self, stream: Any) -> None:
        self.stream, self.gone = stream, False

    def write(self, text: str) -> int:
        """Write `text` unless the reader has gone."""
        return self._quietly(self.stream.write, text) or len(text)

    def flush(self) -> None:
        """Flush unless the reader has gone."""
        self._quietly(self.stream.flush)

    def _quietly(self, action: Any, *args: Any) -> Any:
        """Run `action`; on a broken pipe, point the stream's descriptor at /dev/null and stop."""
        if self.gone:
            return None
        try:
            return action(*args)
        except BrokenPipeError:
            self.gone = True
            try:  # so that Python's flush at exit finds somewhere to write, not an error
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())
            except (OSError, ValueError, AttributeError):
                pass  # not a real descriptor (a test's captured stream)
            return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; user mistakes and disk faults print one line and exit with status 2."""
    for stream in (sys.stdout, sys.stderr):  # a label in a terminal that cannot show it: escaped
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    stdout, sys.stdout = sys.stdout, ReaderMayLeave(sys.stdout)
    try:
        return _run(args)
    finally:
        sys.stdout.flush()  # what is still buffered meets a reader that left here, not at exit
        sys.stdout = stdout


def _run(args: argparse.Namespace) -> int:
    """Run the parsed command; user mistakes and disk faults print one line and return 2."""
    if args.command == "train" and not (args.data_dir or args.manifest):
        print("audiocls train: error: give --data-dir or --manifest", file=sys.stderr)
        return 2
    try:
        with one_line_warnings(args.command):
            validate_settings(args)
            args.run(args)
    except AudioclsError as error:
        print(f"audiocls {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full or read-only disk met mid-run: one line, not a traceback
        option = OUTPUTS.get(args.command, "")
        value = getattr(args, option, None)
        where = f"{_flag(option)} {value}" if value is not None else None
        print(f"audiocls {args.command}: error: {describe_os_error(error, where)}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"audiocls {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
