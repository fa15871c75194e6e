"""Faults in settings and runs: each ends in one line naming the value and what to do, exit 2.

Every case below is run through `audiocls_utils.engine.commands.cli.main`, and the line it prints must be
the one docs/robustness.md's table "Faults in settings and runs" shows for it. After changing a message,
rewrite the table with `UPDATE_README=1 python -m pytest tests/test_fault_table.py`.

Settings are checked before any long work: in the cases not marked `long_work`, decoding,
training, synthesis or a download starting at all fails the test.
"""

from __future__ import annotations

import difflib
import errno
import os
import re
import shlex
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from helpers import REPO, tampered_bundle, tone, untrained_bundle, write_wav

import audiocls_utils.data
import audiocls_utils.engine.commands.download
import audiocls_utils.engine.experiment.runner
import audiocls_utils.engine.synth
import audiocls_utils.files
from audiocls_utils.engine.commands.cli import main
from audiocls_utils.engine.synth import generate_dataset

README = REPO / "docs" / "robustness.md"  # the table lives there (README links it)
START, END = "<!-- faults:start -->", "<!-- faults:end -->"
HEADER = ("| fault | command | what it says after `audiocls <command>: error:` (exit 2) |\n"
          "| --- | --- | --- |")

# A case sets things up in the current folder (a fresh one), yields the command's arguments,
# and after the command has run, checks that nothing was lost.
Setup = Callable[[pytest.MonkeyPatch], Iterator[list[str]]]


@dataclass(frozen=True)
class Case:
    fault: str
    setup: Setup
    env: dict[str, str] = field(default_factory=dict)
    long_work: bool = False  # the fault can only show once work has started (a full disk)
    trained: bool = False  # needs a finished run (the `trained` fixture): slow
    vary: tuple[tuple[str, str], ...] = ()  # (regex, stand-in) for what differs between runs


CASES: list[Case] = []
TRAINED: list[Path] = []  # the folder holding `data` and the finished `run`, once trained


def case(fault: str, env: dict[str, str] | None = None, long_work: bool = False,
         trained: bool = False, vary: tuple[tuple[str, str], ...] = ()
         ) -> Callable[[Setup], Setup]:
    """Register a fault case under the README's wording of `fault`."""
    def register(setup: Setup) -> Setup:
        CASES.append(Case(fault, setup, env or {}, long_work or trained, trained, vary))
        return setup
    return register


def tones(root: Path = Path("data")) -> Path:
    """Write three classes of six 1 s tones (8 kHz) under root/<class>/."""
    for label, frequency in (("low", 200.0), ("mid", 800.0), ("high", 3000.0)):
        for index in range(6):
            write_wav(root / label / f"{label}.{index:05d}.wav",
                      tone(frequency * (1 + 0.03 * index), 1.0, 8000), 8000)
    return root


def write(path: str, data: str | bytes) -> Path:
    """Write text or bytes to `path`, making folders."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data.encode() if isinstance(data, str) else data)
    return target


TRAIN = ["train", "--data-dir", "data", "--output-dir", "run", "--profile", "smoke"]
MANIFEST_ROW = "data/low/low.00000.wav,low,train,1.0\n"


# ----------------------------------------------------------------------------- output paths

@case("`--output-dir` names an existing file")
def _output_dir_is_a_file(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    tones()
    write("run", "my notes")
    yield TRAIN
    assert Path("run").read_text() == "my notes"


@case("`--dest` names an existing file")
def _dest_is_a_file(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    write("gtzan", "my notes")
    yield ["download", "gtzan", "--dest", "gtzan", "--url", "file:///nowhere/genres.tar.gz"]
    assert Path("gtzan").read_text() == "my notes"


@case("`synth --out` names an existing file")
def _synth_out_is_a_file(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    write("synth", "my notes")
    yield ["synth", "--out", "synth"]
    assert Path("synth").read_text() == "my notes"


@case("`prepare --out` below an existing file")
def _out_below_a_file(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    tones()
    write("lists", "my notes")
    yield ["prepare", "--data-dir", "data", "--out", "lists/manifest.csv"]
    assert Path("lists").read_text() == "my notes"


@case("`prepare --out` names a folder")
def _out_is_a_folder(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    tones()
    Path("lists").mkdir()
    yield ["prepare", "--data-dir", "data", "--out", "lists"]
    assert not any(Path("lists").iterdir())


@case("output folder not writable (read-only disk or no permission; simulated)")
def _read_only(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    tones()
    Path("shared").mkdir()
    real_access = os.access
    shared = Path("shared").resolve()
    patch.setattr(os, "access", lambda path, mode: Path(path).resolve() != shared
                  and real_access(path, mode))  # chmod means nothing to root, so simulate it
    yield [*TRAIN[:4], "shared/run", *TRAIN[5:]]
    assert not any(Path("shared").iterdir())


@case("disk full while writing the manifest (simulated)", long_work=True)
def _disk_full(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    tones()
    write("manifest.csv", "the earlier manifest\n")

    def full(_: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    patch.setattr(audiocls_utils.files.os, "fsync", full)
    yield ["prepare", "--data-dir", "data", "--out", "manifest.csv"]
    assert Path("manifest.csv").read_text() == "the earlier manifest\n"
    assert sorted(p.name for p in Path().iterdir()) == ["data", "manifest.csv"]  # no temp file


@case("`synth` into a folder holding a set made with other settings", long_work=True)
def _synth_over_another_set(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    root = generate_dataset("synth", clips_per_class=1, seconds=0.2, progress=False)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    yield ["synth", "--out", "synth", "--clips-per-class", "2", "--seconds", "0.2"]
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


# ----------------------------------------------------------------------------- settings

@case("`--device banana`")
def _device_banana(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    tones()
    yield [*TRAIN, "--device", "banana"]


@case("`--device cuda` without a GPU (simulated)")
def _device_cuda_missing(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    tones()
    patch.setattr(torch.cuda, "is_available", lambda: False)
    yield [*TRAIN, "--device", "cuda"]


@case("`--device cuda:3` on a machine with one GPU (simulated)")
def _device_cuda_index(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    tones()
    patch.setattr(torch.cuda, "is_available", lambda: True)
    patch.setattr(torch.cuda, "device_count", lambda: 1)
    yield [*TRAIN, "--device", "cuda:3"]


@case("negative `--workers`")
def _negative_workers(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    tones()
    yield [*TRAIN, "--workers", "-2"]


@case("negative `--seed`")
def _negative_seed(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    tones()
    yield [*TRAIN, "--seed", "-1"]


@case("`--tracking` not a SwanLab mode")
def _bad_tracking(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    tones()
    yield [*TRAIN, "--tracking", "bogus"]


@case("`SWANLAB_MODE` not a SwanLab mode", env={"SWANLAB_MODE": "garbage"})
def _bad_swanlab_mode(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    tones()
    yield TRAIN


@case("`--label-pattern` not a regular expression")
def _bad_regex(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    tones()
    yield ["prepare", "--data-dir", "data", "--out", "m.csv", "--label-pattern",
           "(?P<label>[a-z]+"]


@case("`--label-pattern` without `(?P<label>...)`")
def _regex_without_label(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    tones()
    yield ["prepare", "--data-dir", "data", "--out", "m.csv", "--label-pattern", r"(\w+)_\d+"]


@case("`dashboard` with a missing log folder")
def _dashboard_missing(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    yield ["dashboard", "--log-dir", "outputs/swanlog"]


@case("`dashboard --port 99999`")
def _dashboard_port(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    Path("swanlog").mkdir()
    yield ["dashboard", "--log-dir", "swanlog", "--port", "99999"]


# ----------------------------------------------------------------------------- tables

@case("manifest without a `duration` column")
def _manifest_no_duration(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    write("m.csv", "path,label,split\ndata/low/low.00000.wav,low,train\n")
    yield ["train", "--manifest", "m.csv", "--output-dir", "run"]


@case("manifest with text in `duration`")
def _manifest_text_duration(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    write("m.csv", "path,label,split,duration\n" + MANIFEST_ROW.replace("1.0", "long"))
    yield ["train", "--manifest", "m.csv", "--output-dir", "run"]


@case("manifest with a clip without a label")
def _manifest_blank_label(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    write("m.csv", "path,label,split,duration\n" + MANIFEST_ROW + MANIFEST_ROW.replace(
        "00000.wav,low", "00001.wav,"))
    yield ["train", "--manifest", "m.csv", "--output-dir", "run"]


@case("manifest that is not text")
def _manifest_binary(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    write("m.csv", b"\x89PNG\r\n\x1a\n\xff\xfe" + bytes(range(256)))
    yield ["train", "--manifest", "m.csv", "--output-dir", "run"]


@case("empty manifest")
def _manifest_empty(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    write("m.csv", "")
    yield ["train", "--manifest", "m.csv", "--output-dir", "run"]


@case("labels CSV without a `path` column")
def _labels_no_path(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    tones()
    write("labels.csv", "file,label\nlow/low.00000.wav,low\n")
    yield ["prepare", "--data-dir", "data", "--labels", "labels.csv", "--out", "m.csv"]


@case("labels CSV listing a clip twice")
def _labels_twice(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    tones()
    write("labels.csv", "path,label\nlow/low.00000.wav,low\nmid/mid.00000.wav,mid\n"
                        "low/low.00000.wav,high\n")
    yield ["prepare", "--data-dir", "data", "--labels", "labels.csv", "--out", "m.csv"]


@case("labels CSV with an unclosed quote")
def _labels_quote(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    tones()
    write("labels.csv", 'path,label\n"low/low.00000.wav,low\nmid/mid.00000.wav,mid\n')
    yield ["prepare", "--data-dir", "data", "--labels", "labels.csv", "--out", "m.csv"]


@case("`groups.csv` without a `group` column")
def _groups_no_group(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    tones()
    write("data/groups.csv", "path,artist\nlow/low.00000.wav,a\n")
    yield ["prepare", "--data-dir", "data", "--out", "m.csv", "--split", "group"]


# ----------------------------------------------------------------------------- run folders

@case("one-class dataset", long_work=True)
def _one_class(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    for index in range(6):
        write_wav(Path(f"data/only/only.{index:05d}.wav"), tone(300 + 20 * index, 1.0, 8000), 8000)
    yield TRAIN
    assert not Path("run").exists()


@case("`--output-dir` holding run files but no run.json (older audiocls, a notebook)",
      long_work=True)
def _run_without_record(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    tones()
    write("run/metrics.json", "{}")
    yield TRAIN
    assert files_below(Path("run")) == {"metrics.json": b"{}"}


@case("damaged run.json", long_work=True)
def _damaged_record(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    tones()
    write("run/run.json", "{\"recipe\": ")
    yield TRAIN
    assert files_below(Path("run")) == {"run.json": b"{\"recipe\": "}


@case("second run into a folder while a run writes there", long_work=True,
      vary=((r"\(pid \d+ on [^,]+, since [^)]+\)", "(pid PID on HOST, since TIME)"),))
def _locked(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    from audiocls_utils.engine.experiment.run_folder import RunLock

    tones()
    Path("run").mkdir()
    with RunLock(Path("run")):
        yield TRAIN


def _copy_trained_run() -> None:
    """Put the finished run in ./run and a link to its data in ./data."""
    shutil.copytree(TRAINED[0] / "run", "run")
    os.symlink(TRAINED[0] / "data", "data")


@case("`--resume` with another `--seed`", trained=True)
def _resume_other_seed(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    _copy_trained_run()
    before = files_below(Path("run"))
    yield [*TRAIN, "--tracking", "disabled", "--resume", "--seed", "5"]
    assert files_below(Path("run")) == before


@case("`--resume` with another `--recipe`", trained=True)
def _resume_other_recipe(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    _copy_trained_run()
    before = files_below(Path("run"))
    yield [*TRAIN, "--tracking", "disabled", "--resume", "--recipe", "advanced"]
    assert files_below(Path("run")) == before


@case("train (no `--resume`) into a folder holding another run", trained=True)
def _other_run(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    _copy_trained_run()
    before = files_below(Path("run"))
    yield [*TRAIN, "--tracking", "disabled", "--recipe", "advanced"]
    assert files_below(Path("run")) == before


@case("torn `checkpoints/last.pt` with `--resume`", trained=True)
def _torn_checkpoint(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    _copy_trained_run()
    Path("run/metrics.json").unlink()  # unfinished: resuming reads last.pt
    last = Path("run/checkpoints/last.pt")
    last.write_bytes(last.read_bytes()[:5000])
    yield [*TRAIN, "--tracking", "disabled", "--resume"]


# ----------------------------------------------------------------------------- model files

def model_file(change: str = "") -> Path:
    """Save a small untrained model bundle (3 classes, 32 px) as model.pt, damaged as `change`."""
    torch.save(tampered_bundle(untrained_bundle(), change), "model.pt")
    return Path("model.pt")


def _predict(change: str) -> Iterator[list[str]]:
    """Predict a good clip with a model file damaged as `change`."""
    model_file(change)
    write_wav(Path("clip.wav"), tone(440.0, 1.0, 8000), 8000)
    yield ["predict", "--model", "model.pt", "clip.wav"]


@case("model file whose head does not fit its class list", long_work=True)
def _model_class_count(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    yield from _predict("class count")


@case("model file naming an unknown model", long_work=True)
def _model_unknown(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    yield from _predict("unknown model")


@case("model file with an absurd `num_frames`", long_work=True)
def _model_num_frames(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    yield from _predict("absurd num_frames")


@case("model file with feature std 0", long_work=True)
def _model_std(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    yield from _predict("std 0")


@case("model giving NaN probabilities", long_work=True)
def _model_nan(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    yield from _predict("NaN")


@case("model file that is a malicious pickle", long_work=True,
      vary=((r"model \([^)]*\)\.", "model (what PyTorch's loader says)."),))
def _model_pickle(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    import pickle

    class Payload:
        def __reduce__(self) -> tuple[object, ...]:
            return os.system, ("touch pwned",)

    write("model.pt", pickle.dumps(Payload()))
    write_wav(Path("clip.wav"), tone(440.0, 1.0, 8000), 8000)
    yield ["predict", "--model", "model.pt", "clip.wav"]
    assert not Path("pwned").exists()


@case("`predict --top-k 0`")
def _top_k(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    write_wav(Path("clip.wav"), tone(440.0, 1.0, 8000), 8000)
    yield ["predict", "--model", "model.pt", "clip.wav", "--top-k", "0"]


@case("`predict --threshold 1.5`")
def _threshold(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    write_wav(Path("clip.wav"), tone(440.0, 1.0, 8000), 8000)
    yield ["predict", "--model", "model.pt", "clip.wav", "--threshold", "1.5"]


@case("`predict --threshold` with `--no-reject`")
def _threshold_no_reject(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    write_wav(Path("clip.wav"), tone(440.0, 1.0, 8000), 8000)
    yield ["predict", "--model", "model.pt", "clip.wav", "--threshold", "0.5", "--no-reject"]


@case("`app` without Gradio installed (simulated)")
def _app_without_gradio(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    import sys

    patch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    model_file()
    yield ["app", "--model", "model.pt"]


@case("`app --port 99999`")
def _app_port(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    model_file()
    yield ["app", "--model", "model.pt", "--port", "99999"]


@case("`download fsdd` into a folder whose `recordings` are not FSDD's")
def _fsdd_not_fsdd(patch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    write("fsdd/recordings/0_me_0.wav", b"RIFF")
    yield ["download", "fsdd", "--dest", "fsdd", "--url", "file:///nowhere/fsdd.tar.gz"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train the smoke profile once on three classes of tones: the finished run ./run."""
    folder = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        tones()
        assert main([*TRAIN, "--tracking", "disabled", "--no-cache"]) == 0
    TRAINED[:] = [folder]
    return folder


# ----------------------------------------------------------------------------- the table

def _no_long_work(*_: object, **__: object) -> None:
    raise AssertionError("long work started before the settings were checked")


def files_below(folder: Path) -> dict[str, bytes]:
    """Return every file below `folder` (relative path) with its content."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*") if p.is_file()}


def run_case(item: Case, folder: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run `item` in `folder`; check one line, exit 2, nothing lost; return its README row."""
    folder.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for name, value in item.env.items():
            patch.setenv(name, value)
        if not item.long_work:
            for module, name in ((audiocls_utils.data, "build_manifest"),
                                 (audiocls_utils.data, "load_manifest"),
                                 (audiocls_utils.engine.experiment.runner, "run_experiment"),
                                 (audiocls_utils.engine.synth, "generate_dataset"),
                                 (audiocls_utils.engine.commands.download, "download")):
                patch.setattr(module, name, _no_long_work)
        steps = item.setup(patch)
        argv = next(steps)
        before = files_below(folder)
        capsys.readouterr()
        status = main(argv)
        out, err = capsys.readouterr()
        next(steps, None)  # the checks after the command: nothing lost or half-written
        if not item.long_work:
            assert files_below(folder) == before, "a refused command must write nothing"
    prefix = f"audiocls {argv[0]}: error: "
    assert status == 2, (status, out, err)
    assert err.count("\n") == 1 and err.startswith(prefix), err
    message = err.removeprefix(prefix).strip()
    for base in {str(folder.resolve()), str(folder)}:
        message = message.replace(base + os.sep, "").replace(base, ".")
    for pattern, stand_in in item.vary:
        message = re.sub(pattern, stand_in, message)
    command = " ".join([*(f"{k}={v}" for k, v in item.env.items()), "audiocls", shlex.join(argv)])
    return f"| {item.fault} | `{command}` | `` {message.replace('|', chr(92) + '|')} `` |"


def readme_rows() -> list[str]:
    """Return the rows of docs/robustness.md's fault table (between the markers)."""
    text = README.read_text()
    if START not in text or END not in text:
        return []
    block = text.split(START, 1)[1].split(END, 1)[0]
    return [line for line in block.strip().splitlines()[2:] if line.startswith("| ")]


def fault_of(row: str) -> str:
    """Return the first cell of a table row."""
    return row[2:].split(" | ", 1)[0]


@pytest.mark.parametrize("item", [pytest.param(c, marks=[pytest.mark.slow] if c.trained else [])
                                  for c in CASES], ids=[c.fault for c in CASES])
def test_fault_gives_the_line_the_readme_shows(item: Case, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               request: pytest.FixtureRequest) -> None:
    if item.trained:
        request.getfixturevalue("trained")
    row = run_case(item, tmp_path / "case", capsys)
    shown = {fault_of(line): line for line in readme_rows()}
    if os.environ.get("UPDATE_README"):
        return  # test_readme_table_lists_every_case rewrites the table
    assert item.fault in shown, (f"docs/robustness.md's fault table has no row for {item.fault!r}; run "
                                 "UPDATE_README=1 python -m pytest tests/test_fault_table.py")
    assert shown[item.fault] == row, "\n" + "\n".join(difflib.unified_diff(
        [shown[item.fault]], [row], "docs/robustness.md", "audiocls", lineterm=""))


def test_readme_table_lists_every_case(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       request: pytest.FixtureRequest) -> None:
    if os.environ.get("UPDATE_README"):
        request.getfixturevalue("trained")
        rows = [run_case(item, tmp_path / f"case{i}", capsys) for i, item in enumerate(CASES)]
        text = README.read_text()
        assert START in text and END in text, f"put {START} and {END} where the table goes"
        head, rest = text.split(START, 1)
        README.write_text(head + START + "\n" + HEADER + "\n" + "\n".join(rows) + "\n" + END
                          + rest.split(END, 1)[1])
    assert [fault_of(row) for row in readme_rows()] == [item.fault for item in CASES]


def test_faults_are_unique_and_the_table_parses() -> None:
    assert len({item.fault for item in CASES}) == len(CASES)
    assert all(" | " not in item.fault for item in CASES)
    text = README.read_text()
    assert text.count(START) == text.count(END) == 1
    assert re.search(re.escape(START) + r"\n" + re.escape(HEADER) + r"\n", text)
