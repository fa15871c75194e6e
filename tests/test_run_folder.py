"""A run folder holds one run: `--resume` continues only the same run, a second run into a busy
folder stops at once, and every refusal is one line that writes nothing (issue 12)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import REPO, tone, write_wav

from audiocls_utils import __version__
from audiocls_utils.config import apply_profile, get_recipe
from audiocls_utils.engine.commands.cli import main
from audiocls_utils.engine.experiment import run_folder
from audiocls_utils.engine.experiment.run_folder import Plan, RunLock, clear_run, plan_run, run_record
from audiocls_utils.errors import AudioclsError
from audiocls_utils.files import TEMP_SUFFIX

SEED = "5"


def _tones(root: Path, classes: dict[str, float], clips: int = 12) -> Path:
    """Write root/<class>/<class>.NNNNN.wav: noisy 1 s tones around each class's frequency."""
    rng = np.random.default_rng(0)
    for label, frequency in classes.items():
        for index in range(clips):
            samples = tone(frequency * rng.uniform(0.9, 1.1), seconds=1.0)
            samples += rng.normal(0, 0.05, samples.shape).astype(np.float32)
            write_wav(root / label / f"{label}.{index:05d}.wav", samples)
    return root


TONES = {"low": 220.0, "mid": 880.0, "high": 3520.0}


def _train(capsys: pytest.CaptureFixture[str], data: Path, out: Path, *extra: str
           ) -> tuple[int, str, str]:
    """Run `audiocls train` (smoke profile) and return its status, stdout and stderr."""
    capsys.readouterr()
    status = main(["train", "--data-dir", str(data), "--profile", "smoke", "--output-dir",
                   str(out), "--tracking", "disabled", "--seed", SEED, "--workers", "0", *extra])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Return every file below `folder` with its bytes and modification time."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Train one smoke run with the command line; return its data folder and run folder."""
    root = tmp_path_factory.mktemp("run-folder")
    data = _tones(root / "tones", TONES)
    out = root / "finished"
    status = main(["train", "--data-dir", str(data), "--profile", "smoke", "--output-dir",
                   str(out), "--tracking", "disabled", "--seed", SEED, "--workers", "0"])
    assert status == 0
    return data, out


@pytest.fixture
def run(finished: tuple[Path, Path], tmp_path: Path) -> Path:
    """Return a copy of the finished run, for a test to change."""
    shutil.copytree(finished[1], tmp_path / "run")
    return tmp_path / "run"


def _unfinished(run: Path) -> None:
    """Make `run` look like a run killed after its last checkpoint."""
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "finished": False}))
    for name in ("metrics.json", "model.pt"):
        (run / name).unlink()


# ----------------------------------------------------------------------------- what a run records

def test_a_run_records_what_defines_it_and_releases_its_lock(finished: tuple[Path, Path]) -> None:
    data, out = finished
    record = json.loads((out / "run.json").read_text())
    recipe = apply_profile(get_recipe("baseline"), "smoke")
    assert record["recipe"] == recipe.to_dict() and record["recipe"]["feature"]["n_mels"] == 128
    assert record["seed"] == 5 and record["audiocls"] == __version__ and record["finished"]
    used = pd.read_csv(out / "manifest.csv")
    assert record["data"]["clips"] == len(used) and (used["split"] == "train").sum() == 3 * 8
    assert record["data"]["fingerprint"] == run_folder.data_fingerprint(used)
    assert not (out / "run.lock").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- --resume

@pytest.mark.parametrize(("extra", "expected"), [
    (("--seed", "6"), "was trained with seed 5, not 6; other data ("),  # re-split: other clips
    (("--recipe", "advanced"), "was trained with recipe baseline@smoke, not advanced@smoke."),
])
def test_resume_with_other_settings_stops_in_one_line_writing_nothing(
        run: Path, finished: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        extra: tuple[str, ...], expected: str) -> None:
    # Before: another seed re-split the data and reported a test score on training clips;
    # another recipe wrote its name over a model trained with the first.
    before = _files(run)
    status, _, err = _train(capsys, finished[0], run, "--resume", *extra)
    assert status == 2 and err.count("\n") == 1 and expected in err, err
    assert "Use the same settings, train into another --output-dir, or pass --overwrite" in err
    assert _files(run) == before and not (run / "run.lock").exists()


def test_resume_with_another_data_folder_keeps_the_runs_manifest(
        run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: it overwrote the finished run's manifest.csv, then crashed with a traceback.
    other = _tones(tmp_path / "other", {"low": 300.0, "high": 2000.0})
    before = _files(run)
    status, _, err = _train(capsys, other, run, "--resume")
    assert status == 2 and err.count("\n") == 1, err
    assert "was trained with other data (" in err and "clips added" in err and "removed" in err
    assert _files(run) == before


@pytest.mark.parametrize("resume", [True, False])
def test_a_finished_run_trained_again_is_left_as_it_is(
        run: Path, finished: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        resume: bool) -> None:
    before = _files(run)
    status, out, err = _train(capsys, finished[0], run, *(["--resume"] if resume else []))
    assert status == 0 and err == ""
    assert f"{run} holds this run, finished: nothing to train" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert f"Test accuracy {metrics['test']['accuracy']:.3f}" in out
    assert "epoch 1/" not in out and _files(run) == before


def test_a_torn_checkpoint_is_named_in_one_line(run: Path, finished: tuple[Path, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    _unfinished(run)
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    before = _files(run)
    status, _, err = _train(capsys, finished[0], run, "--resume")
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{last} is damaged and cannot be read" in err and "delete it" in err
    assert _files(run) == before and not (run / "run.lock").exists()


def test_an_unfinished_run_needs_resume(run: Path, finished: tuple[Path, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    _unfinished(run)
    before = _files(run)
    status, _, err = _train(capsys, finished[0], run)
    assert status == 2 and err.count("\n") == 1
    assert "holds an unfinished run of these settings; pass --resume to continue it" in err
    assert _files(run) == before


@pytest.mark.slow
def test_an_unfinished_run_resumes_and_finishes(run: Path, finished: tuple[Path, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    _unfinished(run)  # killed after its last epoch's checkpoint, before the results
    status, out, _ = _train(capsys, finished[0], run, "--resume")
    assert status == 0 and "Resuming from" in out
    assert json.loads((run / "run.json").read_text())["finished"]
    assert (json.loads((run / "metrics.json").read_text())["test"]
            == json.loads((finished[1] / "metrics.json").read_text())["test"])


# ----------------------------------------------------------------------------- one run per folder

def test_another_run_into_a_folder_holding_a_run_is_refused(
        run: Path, finished: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    # Before: two runs in one --output-dir mixed their files (metrics of one, model of the other).
    before = _files(run)
    status, _, err = _train(capsys, finished[0], run, "--recipe", "advanced")
    assert status == 2 and err.count("\n") == 1
    assert f"{run} holds another run: recipe baseline@smoke, not advanced@smoke." in err
    assert _files(run) == before


def test_a_folder_of_run_files_without_a_record_is_refused(
        run: Path, finished: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    (run / "run.json").unlink()  # an older audiocls, or a run saved from a notebook
    status, _, err = _train(capsys, finished[0], run, "--resume")
    assert status == 2 and "holds files of a run with no run.json" in err


def test_a_damaged_run_record_is_named(run: Path, finished: tuple[Path, Path],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    (run / "run.json").write_text('{"format": "audiocls-run/1", "see')
    status, _, err = _train(capsys, finished[0], run, "--resume")
    assert status == 2 and err.count("\n") == 1 and f"{run / 'run.json'} is damaged" in err


@pytest.mark.parametrize(("change", "problem"), [
    ({"recipe": "baseline"}, 'recipe is "baseline", not an object'),
    ({"data": None}, "data is null, not an object"),
    ({"finished": "no"}, 'finished is "no", not true or false'),
    ({"recipe": {"epochs": "many", "feature": {}}}, 'recipe.epochs is "many", not a whole number'),
])
def test_a_run_record_holding_impossible_values_is_named(tmp_path: Path, change: dict,
                                                         problem: str) -> None:
    # Before: an AttributeError or ValueError traceback (and "finished": "no" counted as finished).
    record, manifest = _record_folder(tmp_path / "run")
    (tmp_path / "run" / "run.json").write_text(json.dumps({**record, **change}))
    before = _files(tmp_path / "run")
    for resume in (False, True):
        with pytest.raises(AudioclsError, match=re.escape(f"run.json is damaged ({problem}); "
                                                          "delete the folder")):
            plan_run(tmp_path / "run", record, manifest, resume, False)
    assert _files(tmp_path / "run") == before


def test_an_output_dir_that_is_a_file_is_refused(finished: tuple[Path, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken").write_text("my notes\n")
    status, _, err = _train(capsys, finished[0], tmp_path / "taken")
    assert status == 2 and err.count("\n") == 1 and "is a file, not a folder" in err
    assert (tmp_path / "taken").read_text() == "my notes\n"


def test_overwrite_deletes_only_the_files_a_run_wrote(run: Path) -> None:
    (run / "notes.txt").write_text("mine\n")
    record = json.loads((run / "run.json").read_text())
    other = {**record, "seed": 6}
    with pytest.raises(AudioclsError, match="seed 5, not 6"):
        plan_run(run, other, pd.read_csv(run / "manifest.csv"), resume=False, overwrite=False)
    assert plan_run(run, other, pd.read_csv(run / "manifest.csv"), False, True) is Plan.FRESH
    clear_run(run)
    left = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    assert left == ["checkpoints", "notes.txt"]


def test_overwrite_removes_what_was_made_from_the_replaced_model(run: Path) -> None:
    # Before: the old model.onnx, its JSON and evaluation_test.json stayed beside the new model.
    sidecar = {"format": "onnx", "class_names": ["a"], "feature_config": {}, "num_frames": 1}
    made = {"model.onnx": "onnx bytes", "model.onnx.json": json.dumps(sidecar),
            "evaluation_test.json": json.dumps({"model": "runs/x/model.pt", "subset": "test",
                                                "classes": ["a"]})}
    mine = {"model.ts": "my own TorchScript, no sidecar", "evaluation_notes.json": '{"n": 1}',
            "evaluation_val.json": json.dumps({"model": "other.pt", "subset": "val",
                                               "classes": ["a"]})}
    for name, text in {**made, **mine}.items():
        (run / name).write_text(text)
    clear_run(run)
    assert not any((run / name).exists() for name in made)
    assert all((run / name).read_text() == text for name, text in mine.items())


def test_overwrite_keeps_a_manifest_no_run_wrote(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # Before: --overwrite replaced the user's own manifest.csv (their group split) by the run's.
    record, manifest = _record_folder(tmp_path / "folder")
    for name in ("run.json", *run_folder.FINISHED_FILES):
        (tmp_path / "folder" / name).unlink()
    mine = (tmp_path / "folder" / "manifest.csv").read_bytes()
    with pytest.raises(AudioclsError, match="holds a manifest.csv that no run wrote .* renamed, "
                                            "not deleted"):
        plan_run(tmp_path / "folder", record, manifest, False, False)
    assert plan_run(tmp_path / "folder", record, manifest, False, True) is Plan.FRESH
    (tmp_path / "folder" / "manifest.kept.csv").write_text("kept by an earlier --overwrite")
    capsys.readouterr()
    clear_run(tmp_path / "folder")
    kept = tmp_path / "folder" / "manifest.kept1.csv"
    assert capsys.readouterr().out == (f"Kept {tmp_path / 'folder' / 'manifest.csv'} (no run.json "
                                       f"says a run wrote it) as {kept}\n")
    assert kept.read_bytes() == mine and not (tmp_path / "folder" / "manifest.csv").exists()


def test_a_one_class_dataset_stops_before_training(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # Before: it trained and reported "accuracy 1.000".
    data = _tones(tmp_path / "one", {"only": 440.0})
    status, _, err = _train(capsys, data, tmp_path / "out")
    assert status == 2 and err.count("\n") == 1
    assert "Training needs at least two classes; the data has only ['only']" in err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- settings compared

def _record_folder(folder: Path, **recipe_changes: object) -> tuple[dict, pd.DataFrame]:
    """Write a finished run's run.json, manifest and results by hand; return its record."""
    clips = [write_wav(folder.parent / "clips" / f"{i}.wav", tone(440.0, 0.2)) for i in range(4)]
    manifest = pd.DataFrame({"path": [str(c) for c in clips], "label": ["a", "a", "b", "b"],
                             "split": ["train", "test", "train", "test"]})
    recipe = apply_profile(get_recipe("baseline"), "smoke")
    recipe = replace(recipe, **recipe_changes)
    record = {**run_record(recipe, 0, "random", manifest), "finished": True}
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(record))
    manifest.to_csv(folder / "manifest.csv", index=False)
    for name in run_folder.FINISHED_FILES:
        (folder / name).write_text("x")
    return record, manifest


def test_more_epochs_continue_a_stepped_run_but_not_a_cosine_one(tmp_path: Path) -> None:
    record, manifest = _record_folder(tmp_path / "step", epochs=2)
    longer = {**record, "recipe": {**record["recipe"], "epochs": 3}, "finished": False}
    assert plan_run(tmp_path / "step", record, manifest, True, False) is Plan.FINISHED
    assert plan_run(tmp_path / "step", longer, manifest, True, False) is Plan.RESUME
    with pytest.raises(AudioclsError, match="holds a finished run of fewer epochs .* pass --resume"):
        plan_run(tmp_path / "step", longer, manifest, False, False)
    shorter = {**record, "recipe": {**record["recipe"], "epochs": 1}}
    with pytest.raises(AudioclsError, match="epochs 2, not 1"):
        plan_run(tmp_path / "step", shorter, manifest, True, False)
    # A cosine schedule's rates depend on the epoch count: 3 epochs do not extend 2.
    record, manifest = _record_folder(tmp_path / "cosine", epochs=2, schedule="cosine")
    longer = {**record, "recipe": {**record["recipe"], "epochs": 3}}
    with pytest.raises(AudioclsError, match="was trained with epochs 2, not 3"):
        plan_run(tmp_path / "cosine", longer, manifest, True, False)


def test_a_run_stopped_before_its_first_checkpoint_starts_again(tmp_path: Path) -> None:
    record, manifest = _record_folder(tmp_path / "run")
    (tmp_path / "run" / "run.json").write_text(json.dumps({**record, "finished": False}))
    assert plan_run(tmp_path / "run", record, manifest, False, False) is Plan.FRESH
    (tmp_path / "run" / "checkpoints").mkdir()
    (tmp_path / "run" / "checkpoints" / "last.pt").write_bytes(b"an epoch's work")
    with pytest.raises(AudioclsError, match="pass --resume"):
        plan_run(tmp_path / "run", record, manifest, False, False)
    assert plan_run(tmp_path / "run", record, manifest, True, False) is Plan.RESUME


def test_split_features_version_and_changed_files_are_compared(tmp_path: Path) -> None:
    record, manifest = _record_folder(tmp_path / "run")
    feature = {**record["recipe"]["feature"], "n_mels": 64}
    cases = {
        "split random, not group": {**record, "split": "group"},
        "feature.n_mels 128, not 64": {**record, "recipe": {**record["recipe"],
                                                            "feature": feature}},
        f"audiocls {__version__}, not 9.9": {**record, "audiocls": "9.9"},
    }
    for expected, other in cases.items():
        with pytest.raises(AudioclsError, match=expected.replace(".", r"\.")):
            plan_run(tmp_path / "run", other, manifest, True, False)
    write_wav(Path(manifest["path"][0]), tone(440.0, 0.3))  # same path, other content
    changed = run_record(apply_profile(get_recipe("baseline"), "smoke"), 0, "random", manifest)
    with pytest.raises(AudioclsError, match=r"other data \(the same clips, but files changed\)"):
        plan_run(tmp_path / "run", changed, manifest, True, False)


@pytest.mark.parametrize("keep_mtime", [False, True])
def test_a_finished_run_is_not_reused_once_its_clips_hold_new_content_at_the_same_size(
        tmp_path: Path, keep_mtime: bool) -> None:
    # Before: "finished: nothing to train" and the old test accuracy for regenerated clips.
    record, manifest = _record_folder(tmp_path / "run")
    assert plan_run(tmp_path / "run", record, manifest, False, False) is Plan.FINISHED
    for path in manifest["path"]:
        stat = os.stat(path)
        write_wav(Path(path), tone(660.0, 0.2))  # new content, the same size
        assert os.stat(path).st_size == stat.st_size
        if keep_mtime:  # a copy that keeps times (cp -p, rsync -t): the bytes still tell
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = run_record(apply_profile(get_recipe("baseline"), "smoke"), 0, "random", manifest)
    with pytest.raises(AudioclsError, match=r"holds another run: other data \(the same clips, "
                                            r"but files changed\).*pass --overwrite"):
        plan_run(tmp_path / "run", again, manifest, False, False)


# ----------------------------------------------------------------------------- the lock

HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from audiocls_utils.engine.experiment.run_folder import RunLock
    with RunLock(Path(sys.argv[1])):
        print("held", flush=True)
        time.sleep(120)
""")


def test_a_second_run_stops_at_once_and_a_killed_runs_lock_is_taken_over(
        run: Path, finished: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline() == "held\n"
        lock = json.loads((run / "run.lock").read_text())
        assert lock["pid"] == holder.pid and lock["host"] and lock["started"]
        before = _files(run)
        status, out, err = _train(capsys, finished[0], run, "--resume")
        assert status == 2 and err.count("\n") == 1
        assert f"{run} is in use by another run (pid {holder.pid} on " in err
        assert f"since {lock['started']}" in err and "Feature cache" not in out
        assert _files(run) == before
    finally:
        holder.kill()  # like kill -9: the lock stays behind
        holder.wait()
    assert json.loads((run / "run.lock").read_text())["pid"] == holder.pid
    with RunLock(run):
        out = capsys.readouterr().out
        assert out == (f"Taking over {run / 'run.lock'}: the run that held it (pid {holder.pid}, "
                       f"since {lock['started']}) no longer runs\n")
        assert json.loads((run / "run.lock").read_text())["pid"] == os.getpid()
    assert not (run / "run.lock").exists()


def test_a_lock_from_another_host_or_half_written_is_respected(tmp_path: Path) -> None:
    tmp_path.joinpath("run.lock").write_text(json.dumps(
        {"pid": 1, "host": "elsewhere", "started": "2024-01-01T00:00:00+00:00"}))
    with pytest.raises(AudioclsError, match=r"in use by another run \(pid 1 on elsewhere, since "
                                            r"2024-01-01T00:00:00\+00:00\)"):
        RunLock(tmp_path).acquire()
    tmp_path.joinpath("run.lock").write_text("")  # created, its holder not yet written
    with pytest.raises(AudioclsError, match="a run that is just starting.*delete .*run.lock only"):
        RunLock(tmp_path).acquire()


def test_a_lock_is_released_when_the_run_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), RunLock(tmp_path / "run"):
        assert (tmp_path / "run" / "run.lock").exists()
        raise RuntimeError("training failed")
    assert not (tmp_path / "run" / "run.lock").exists()


# ----------------------------------------------------------------------------- leftovers

def test_temporary_files_of_a_killed_write_are_removed_by_the_next_run(
        run: Path, finished: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    # What kill -9 during a checkpoint save leaves: the atomic writer's temporary file.
    left = [tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=TEMP_SUFFIX)
            for folder, name in ((run / "checkpoints", "last.pt"), (run, "metrics.json"))]
    for handle, _ in left:
        os.close(handle)
    (run / ".notes.tmp").write_text("mine")  # not the writer's: kept
    (run / "draft.tmp").write_text("mine")
    status, out, _ = _train(capsys, finished[0], run, "--resume")
    assert status == 0
    assert f"Removed 2 temporary file(s) left in {run} by an interrupted run" in out
    assert not any(Path(name).exists() for _, name in left)
    assert (run / ".notes.tmp").exists() and (run / "draft.tmp").exists()
