"""The command-line contract: synth -> prepare -> train -> evaluate -> predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from audiocls_utils.engine.commands.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `audiocls ARGS` in-process and return (status, stdout, stderr)."""
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.slow
def test_the_whole_pipeline_from_the_command_line(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data, out = tmp_path / "synth", tmp_path / "run"
    assert run(capsys, "synth", "--out", str(data), "--clips-per-class", "6", "--seconds",
               "2")[0] == 0
    status, text, _ = run(capsys, "prepare", "--data-dir", str(data), "--out",
                          str(tmp_path / "m.csv"), "--split", "group")
    assert status == 0 and "60 clips in 10 classes, 0 excluded" in text
    manifest = pd.read_csv(tmp_path / "m.csv")
    assert set(manifest["split"]) == {"train", "val", "test"}
    assert manifest.groupby("group")["split"].nunique().max() == 1

    status, text, _ = run(capsys, "train", "--data-dir", str(data), "--recipe", "baseline",
                          "--profile", "smoke", "--output-dir", str(out), "--tracking",
                          "disabled")
    assert status == 0 and "Test accuracy" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["classes"]) == 10
    for split in ("val", "test"):
        assert {"accuracy", "macro_f1"} <= set(metrics[split])
        assert 0.0 <= metrics[split]["accuracy"] <= 1.0
    assert len(metrics["test"]["confusion_matrix"]) == 10
    assert (out / "model.pt").exists() and (out / "history.csv").exists()

    clip = sorted((data / "genres" / "jazz").glob("*.wav"))[0]
    status, text, _ = run(capsys, "predict", "--model", str(out / "model.pt"), str(clip),
                          "--top-k", "3", "--json")
    assert status == 0
    [prediction] = json.loads(text)
    assert len(prediction["top"]) == 3
    assert sum(t["probability"] for t in prediction["top"]) <= 1.0 + 1e-6

    status, text, _ = run(capsys, "evaluate", "--model", str(out / "model.pt"), "--data-dir",
                          str(data), "--out", str(tmp_path / "eval.json"))
    assert status == 0 and "macro-F1" in text
    # random split: round(6 * 0.2) = 1 test clip per class, 10 classes
    assert json.loads((tmp_path / "eval.json").read_text())["num_clips"] == 10


def test_user_mistakes_print_one_line_and_exit_2(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "prepare", "--data-dir", str(tmp_path / "missing"), "--out",
                         str(tmp_path / "m.csv"))
    assert status == 2 and err.count("\n") == 1 and "does not exist" in err
    assert not (tmp_path / "m.csv").exists()
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    status, _, err = run(capsys, "predict", "--model", str(tmp_path / "junk.pt"), "x.wav")
    assert status == 2 and "not a readable audiocls model" in err
    status, _, err = run(capsys, "train", "--output-dir", str(tmp_path / "o"))
    assert status == 2 and "--data-dir" in err


def test_help_has_examples() -> None:
    result = subprocess.run([sys.executable, "-m", "audiocls_utils", "train", "--help"],
                            capture_output=True, text=True, check=True)
    assert "example:" in result.stdout and "--profile" in result.stdout


def test_evaluate_warns_when_the_scored_clips_trained_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from audiocls_utils.engine.commands.cli import _warn_if_trained_on

    (tmp_path / "manifest.csv").write_text("path,label,split\n/a.wav,x,train\n/b.wav,x,test\n")
    _warn_if_trained_on(pd.DataFrame({"path": ["/b.wav"]}), tmp_path / "model.pt")
    assert capsys.readouterr().out == ""
    _warn_if_trained_on(pd.DataFrame({"path": ["/a.wav", "/b.wav"]}), tmp_path / "model.pt")
    assert "Warning: 1 of these 2 clips trained this model" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize(("moved", "says"), [
    (["test"], "No test set in this split, so no result to report: the validation figures chose"),
    (["test", "val"], "No test or validation set in this split, so no result to report: the "
                      "model is the last epoch's"),
])
def test_train_without_a_test_split_says_there_is_no_result(
    tmp_path: Path, tone_dataset: Path, capsys: pytest.CaptureFixture[str], moved: list[str],
    says: str,
) -> None:
    assert run(capsys, "prepare", "--data-dir", str(tone_dataset), "--out",
               str(tmp_path / "m.csv"))[0] == 0
    manifest = pd.read_csv(tmp_path / "m.csv")
    manifest.loc[manifest["split"].isin(moved), "split"] = "train"
    manifest.to_csv(tmp_path / "m.csv", index=False)
    status, text, _ = run(capsys, "train", "--manifest", str(tmp_path / "m.csv"), "--profile",
                          "smoke", "--output-dir", str(tmp_path / "run"), "--tracking", "disabled")
    assert status == 0 and "Test accuracy" not in text
    assert says in text and ("validation figures" in text) == (moved == ["test"])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test"] is None


def test_validate_device_names_what_this_machine_has(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from audiocls_utils.engine.commands.cli import validate_device
    from audiocls_utils.errors import AudioclsError

    assert validate_device("cpu") == validate_device(" CPU ") == "cpu"
    for bad in ("banana", "meta", "cuda:-1", ""):
        with pytest.raises(AudioclsError, match="is not a device"):
            validate_device(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(AudioclsError, match="PyTorch sees none"):
        validate_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert validate_device("cuda") == "cuda" and validate_device("cuda:1") == "cuda:1"
    with pytest.raises(AudioclsError, match="has 2 GPUs, cuda:0 to cuda:1"):
        validate_device("cuda:2")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(AudioclsError, match="MPS, which this machine lacks"):
        validate_device("mps")


@pytest.mark.parametrize(("code", "filename", "words"), [
    (28, None, "no space left on the disk while writing --output-dir runs/a: free some space"),
    (28, "runs/a/model.pt", "no space left on the disk while writing runs/a/model.pt"),
    (30, "runs/a/.x.tmp", "cannot write runs/a/.x.tmp (Read-only file system): choose a folder"),
    (13, "runs/a", "cannot write runs/a (Permission denied): choose a folder"),
    (20, "runs/a/b", "runs/a/b: Not a directory: a file stands where a folder is needed"),
])
def test_disk_faults_become_one_line_naming_the_file(code: int, filename: str | None,
                                                     words: str) -> None:
    import os

    from audiocls_utils.engine.commands.cli import describe_os_error

    error = OSError(code, os.strerror(code)) if filename is None else OSError(
        code, os.strerror(code), filename)
    assert describe_os_error(error, "--output-dir runs/a").startswith(words)


def test_a_write_refused_mid_run_is_one_line_and_keeps_the_old_file(
    tone_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    import errno
    import os
    import tempfile

    out = tmp_path / "lists" / "m.csv"
    out.parent.mkdir()
    out.write_text("earlier\n")

    def refused(*_: object, dir: str, **__: object) -> None:  # noqa: A002 - mkstemp's name
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), f"{dir}/.m.csv.x.tmp")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    status, _, err = run(capsys, "prepare", "--data-dir", str(tone_dataset), "--out", str(out))
    assert status == 2 and err.count("\n") == 1
    assert f"cannot write {out.parent}/.m.csv.x.tmp (Permission denied)" in err
    assert out.read_text() == "earlier\n"


def test_allow_similar_labels_keeps_tree_and_three(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from helpers import tone, write_wav

    for label, count, frequency in (("tree", 10, 300.0), ("three", 2, 900.0)):
        for index in range(count):
            write_wav(tmp_path / "data" / label / f"{label}{index}.wav",
                      tone(frequency + 10 * index, 0.5, 8000), 8000)
    args = ["prepare", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "m.csv")]
    status, _, err = run(capsys, *args)
    assert status == 2 and "looks like a typo of 'tree'" in err and "--allow-similar-labels" in err
    status, text, _ = run(capsys, *args, "--allow-similar-labels")
    assert status == 0 and "12 clips in 2 classes" in text
    for command in ("train", "evaluate"):
        assert "--allow-similar-labels" in subprocess.run(
            [sys.executable, "-m", "audiocls_utils", command, "--help"], capture_output=True,
            text=True, check=True).stdout


def test_warnings_print_as_one_line() -> None:
    code = ("import warnings\n"
            "from audiocls_utils.engine.commands.cli import one_line_warnings\n"
            "with one_line_warnings('train'):\n"
            "    warnings.warn('Feature cache entry x.npy is damaged', RuntimeWarning)\n"
            "warnings.warn('outside', UserWarning)\n")
    result = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True,
                            text=True, check=True)
    lines = result.stderr.splitlines()
    assert lines[0] == "audiocls train: warning: Feature cache entry x.npy is damaged"
    assert lines[1].endswith(": UserWarning: outside")  # the default format again


def test_dashboard_reports_a_failed_swanlab_watch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(subprocess, "run", lambda *_, **__: subprocess.CompletedProcess([], 1))
    from audiocls_utils.engine.commands.dashboard import free_port

    (tmp_path / "swanlog").mkdir()
    status, _, err = run(capsys, "dashboard", "--log-dir", str(tmp_path / "swanlog"), "--port",
                         str(free_port()))  # the default 5092 may be taken on a shared machine
    assert status == 2 and "swanlab watch stopped with status 1" in err


# ----------------------------------------------------------------------------- outputs and inputs

def _hard_link(target: Path, link: Path) -> Path:
    """Make `link` a second name of the file `target`."""
    os.link(target, link)
    return link


@pytest.mark.parametrize(("argv", "output", "source"), [
    ("export --model model.pt --format onnx --out model.pt", "model.pt", "model.pt"),
    ("export --model model.onnx --format onnx", "model.onnx", "model.onnx"),  # the default path
    ("evaluate --model model.pt --data-dir tones --out model.pt", "model.pt", "model.pt"),
    ("evaluate --model model.pt --data-dir tones --out sub/../model.pt", "sub/../model.pt",
     "model.pt"),
    ("evaluate --model model.pt --data-dir tones --out second-name.json", "second-name.json",
     "model.pt"),
    ("prepare --data-dir tones --labels labels.csv --out labels.csv", "labels.csv", "labels.csv"),
    ("prepare --data-dir tones --out tones/groups.csv", "tones/groups.csv", "tones/groups.csv"),
    ("train --manifest run/manifest.csv --output-dir run", "run/manifest.csv", "run/manifest.csv"),
])
def test_an_output_that_is_an_input_is_refused_naming_both(
        tone_dataset: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        argv: str, output: str, source: str) -> None:
    # Before: the trained model became JSON or ONNX; the labels or groups became a manifest.
    monkeypatch.chdir(tone_dataset.parent)
    (tone_dataset.parent / "sub").mkdir()
    for name in ("model.pt", "model.onnx", "labels.csv", "tones/groups.csv"):
        Path(name).write_text("path,label\nlow/low.00000.wav,low\n")
    _hard_link(Path("model.pt"), Path("second-name.json"))
    Path("run").mkdir()
    Path("run/manifest.csv").write_text(f"path,label,split,duration\n{tone_dataset}/low/"
                                        "low.00000.wav,low,train,1.0\n")
    before = {p: p.read_bytes() for p in Path().rglob("*") if p.is_file()}
    status, _, err = run(capsys, *argv.split())
    assert status == 2 and err.count("\n") == 1, err
    assert f"{output} is also an input (" in err and f" {source}): writing would destroy it" in err
    assert {p: p.read_bytes() for p in Path().rglob("*") if p.is_file()} == before


def test_prepare_refuses_to_write_over_a_clip(tone_dataset: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    clip = tone_dataset / "low" / "low.00000.wav"
    before = clip.read_bytes()
    status, _, err = run(capsys, "prepare", "--data-dir", str(tone_dataset), "--out", str(clip))
    assert status == 2 and err.count("\n") == 1
    assert f"--out {clip} is also an input (a clip of --data-dir {tone_dataset})" in err
    assert clip.read_bytes() == before


@pytest.mark.parametrize(("extra", "ignored"), [
    (("--data-dir", "tones"), "--data-dir would be ignored: drop it"),
    (("--split", "group"), "--split would be ignored: drop it"),
    (("--split", "random", "--label-pattern", "fsdd"), "--label-pattern and --split would be "
                                                       "ignored: drop them"),
])
def test_train_refuses_options_that_manifest_overrides(
        tone_dataset: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        extra: tuple[str, ...], ignored: str) -> None:
    # Before: --data-dir and --split group were silently ignored beside --manifest.
    monkeypatch.chdir(tone_dataset.parent)
    assert run(capsys, "prepare", "--data-dir", "tones", "--out", "m.csv")[0] == 0
    status, _, err = run(capsys, "train", "--manifest", "m.csv", "--output-dir", "run", *extra)
    assert status == 2 and err.count("\n") == 1
    assert f"--manifest m.csv already lists the clips, labels and splits, so {ignored}" in err
    assert not Path("run").exists()


def test_train_from_a_manifest_runs_the_label_checks_of_prepare(
        tone_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: a hand-edited manifest with `Low` beside `low` trained a model of one class more.
    assert run(capsys, "prepare", "--data-dir", str(tone_dataset), "--out",
               str(tmp_path / "m.csv"))[0] == 0
    manifest = pd.read_csv(tmp_path / "m.csv")
    manifest.loc[manifest.index[manifest["label"] == "low"][0], "label"] = "Low"
    manifest.to_csv(tmp_path / "m.csv", index=False)
    status, _, err = run(capsys, "train", "--manifest", str(tmp_path / "m.csv"), "--output-dir",
                         str(tmp_path / "run"))
    assert status == 2 and err.count("\n") == 1
    assert "Label 'Low' (1 clip(s)) looks like a typo of 'low' (11 clips)" in err
    assert not (tmp_path / "run").exists()


def test_evaluate_keeps_each_seeds_result_and_records_seed_and_overlap(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: --seed 8 wrote over the evaluation of --seed 7, and neither recorded its seed.
    import torch
    from helpers import BUNDLE_CLASSES, tone, untrained_bundle, write_wav

    for number, label in enumerate(BUNDLE_CLASSES):
        for index in range(5):
            write_wav(tmp_path / "data" / label / f"{label}{index}.wav",
                      tone(300.0 * (number + 1) + 20 * index, 0.5))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save(untrained_bundle(), run_dir / "model.pt")
    common = ["evaluate", "--model", str(run_dir / "model.pt"), "--data-dir",
              str(tmp_path / "data")]
    assert run(capsys, *common, "--seed", "7")[0] == 0
    first = run_dir / "evaluation_test_random-seed7.json"
    saved = first.read_bytes()
    pd.DataFrame({"path": [str(p.resolve()) for p in sorted((tmp_path / "data").rglob("*.wav"))],
                  "split": "train"}).to_csv(run_dir / "manifest.csv", index=False)
    assert run(capsys, *common, "--seed", "8")[0] == 0
    second = json.loads((run_dir / "evaluation_test_random-seed8.json").read_text())
    assert first.read_bytes() == saved
    assert json.loads(saved)["seed"] == 7 and second["seed"] == 8
    assert json.loads(saved)["clips_that_trained_the_model"] is None  # no manifest.csv to tell
    assert second["clips_that_trained_the_model"] == second["num_clips"] == 3  # all trained it
    assert sorted(p.name for p in run_dir.glob("evaluation_*")) == [
        "evaluation_test_random-seed7.json", "evaluation_test_random-seed8.json"]


def test_workers_beyond_the_cores_are_capped_with_a_note(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: --workers 500 on 2 cores made no progress for minutes.
    from audiocls_utils.engine.commands import cli

    monkeypatch.setattr(cli.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    args = cli.build_parser().parse_args(["train", "--data-dir", str(tmp_path), "--output-dir",
                                          str(tmp_path / "run"), "--workers", "500"])
    cli.cap_workers(args)
    assert args.workers == 2
    assert capsys.readouterr().out == ("Note: --workers 500 is more than the 2 CPU core(s) here; "
                                       "using 2\n")
    args.workers = 1
    cli.cap_workers(args)
    assert args.workers == 1 and capsys.readouterr().out == ""


@pytest.mark.parametrize(("argv", "expected"), [
    (["train", "--seed", str(2**32)], "--seed 4294967296 is too large for NumPy's generator: "
                                      "give a whole number from 0 to 4294967295"),
    (["synth", "--seconds", "1e12"], "seconds must be at most 600 (10 min per clip"),
])
def test_values_beyond_what_can_run_are_one_line(
        tone_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
        expected: str) -> None:
    # Before: a ValueError traceback from np.random.seed; an attempt to allocate 47 TiB.
    where = (["--data-dir", str(tone_dataset), "--output-dir", str(tmp_path / "run")]
             if argv[0] == "train" else ["--out", str(tmp_path / "synth")])
    status, _, err = run(capsys, argv[0], *where, *argv[1:])
    assert status == 2 and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "synth" / "genres").exists()


def test_a_label_the_terminal_cannot_show_is_escaped_not_a_traceback(tmp_path: Path) -> None:
    # Before: PYTHONIOENCODING=ascii and a class folder named "café": UnicodeEncodeError.
    from helpers import REPO, tone, write_wav

    for label, frequency in (("café", 300.0), ("rock", 900.0)):
        for index in range(4):
            write_wav(tmp_path / "data" / label / f"{index}.wav", tone(frequency + index, 0.3))
    result = subprocess.run([sys.executable, "-m", "audiocls_utils", "prepare", "--data-dir",
                             str(tmp_path / "data"), "--out", str(tmp_path / "m.csv")],
                            capture_output=True, text=True, encoding="ascii", errors="strict",
                            env={**os.environ, "PYTHONIOENCODING": "ascii",
                                 "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert "caf\\xe9" in result.stdout and "8 clips in 2 classes" in result.stdout
    assert "café" in (tmp_path / "m.csv").read_text(encoding="utf-8")  # the manifest keeps it


# ----------------------------------------------------------------------------- unclear, made clear

def _manifest(path: Path, rows: list[str]) -> Path:
    """Write a manifest CSV with the columns train needs and the given rows."""
    path.write_text("path,label,split,duration\n" + "".join(f"{row}\n" for row in rows))
    return path


def test_inputs_of_the_wrong_kind_are_named_with_what_to_do(
        tmp_path: Path, tone_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = next((tone_dataset / "low").glob("*.wav"))
    cases = [
        (["prepare", "--data-dir", str(clip), "--out", str(tmp_path / "m.csv")],
         f"Data folder {clip} is a file, not a folder"),
        (["train", "--manifest", str(_manifest(tmp_path / "header.csv", [])), "--output-dir",
          str(tmp_path / "r1")], f"Manifest {tmp_path / 'header.csv'} has a header but no clips"),
        (["train", "--manifest", str(_manifest(tmp_path / "folder.csv", [
            f"{tone_dataset / 'low'},low,train,1", f"{clip},low,train,1"])),
          "--output-dir", str(tmp_path / "r2")],
         f"1 row(s) name a folder, not an audio file, e.g. {tone_dataset / 'low'}"),
    ]
    os.mkfifo(tmp_path / "labels.csv")  # what --labels <(...) passes
    cases.append((["prepare", "--data-dir", str(tone_dataset), "--labels",
                   str(tmp_path / "labels.csv"), "--out", str(tmp_path / "m.csv")],
                  f"Labels file {tmp_path / 'labels.csv'} is a pipe (a FIFO or a process "
                  "substitution <(...)), not a file"))
    for argv, says in cases:
        status, _, err = run(capsys, *argv)
        assert status == 2 and err.count("\n") == 1 and says in err, (argv, err)
    assert not (tmp_path / "m.csv").exists()


def test_a_reader_that_stops_early_is_no_error_and_the_manifest_is_whole(
        tmp_path: Path, tone_dataset: Path) -> None:
    # `audiocls prepare ... | head -2`: head leaves after two lines; the manifest is written.
    command = [sys.executable, "-m", "audiocls_utils", "prepare", "--data-dir", str(tone_dataset),
               "--out", str(tmp_path / "m.csv")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert process.stdout is not None
    process.stdout.close()  # the reader is gone before the first line
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0 and err.decode() == ""
    assert len(pd.read_csv(tmp_path / "m.csv")) == 36


def test_stdout_whose_reader_left_drops_output_quietly() -> None:
    from audiocls_utils.engine.commands.cli import ReaderMayLeave

    class Gone:
        """A stream whose reader has left."""

        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    stream = ReaderMayLeave(Gone())
    assert stream.write("a line\n") == len("a line\n") and stream.gone
    stream.flush()  # no error either
