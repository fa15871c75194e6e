"""`audiocls predict` faults: every bad file named with prepare's reason while the good ones are
labelled, a non-zero exit at the end, `--top-k` checked, and tampered model files refused in one
line that names the file and says to re-export or retrain."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import BUNDLE_CLASSES, tampered_bundle, tone, untrained_bundle, write_wav

from audiocls_utils import audio, predict
from audiocls_utils.data import build_manifest
from audiocls_utils.engine.commands.cli import main

CLASSES = BUNDLE_CLASSES  # the untrained bundle's classes


@pytest.fixture(scope="module")
def bundle() -> dict[str, Any]:
    return untrained_bundle()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory, bundle: dict[str, Any]) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.pt"
    torch.save(bundle, path)
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `audiocls ARGS` in-process and return (status, stdout, stderr)."""
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _bad_files(folder: Path) -> dict[str, Path]:
    """Write one file of each kind `prepare` excludes; return name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    good = write_wav(folder / "good_for_cutting.wav", tone(440.0, 1.0)).read_bytes()
    (folder / "good_for_cutting.wav").unlink()
    files = {
        "silent.wav": write_wav(folder / "silent.wav", np.zeros(22050, np.float32)),
        "nan.wav": write_wav(folder / "nan.wav", np.full(22050, np.nan, np.float32),
                             subtype="FLOAT"),
        "one_sample.wav": write_wav(folder / "one_sample.wav", np.array([0.5], np.float32)),
        "short.wav": write_wav(folder / "short.wav", tone(440.0, 0.05)),
        "empty.wav": folder / "empty.wav",
        "cut.wav": folder / "cut.wav",
        "header_cut.wav": folder / "header_cut.wav",
        "corrupt.wav": folder / "corrupt.wav",
        "text.mp3": folder / "text.mp3",
        "huge.wav": write_wav(folder / "huge.wav", tone(440.0, 1.0) * np.float32(1.6e37),
                              subtype="FLOAT"),
        "one_hertz.wav": write_wav(folder / "one_hertz.wav", tone(0.2, 30.0, 1), 1),
        "cancelling.wav": write_wav(folder / "cancelling.wav",
                                    np.stack([tone(440.0, 1.0), -tone(440.0, 1.0)], axis=1)),
    }
    files["empty.wav"].write_bytes(b"")
    files["cut.wav"].write_bytes(good[: len(good) // 2])  # an interrupted download
    files["header_cut.wav"].write_bytes(good[:30])
    files["corrupt.wav"].write_bytes(b"RIFF\x00\x10\x00\x00WAVE" + bytes(range(256)) * 16)
    files["text.mp3"].write_text("this is not an mp3\n" * 50)
    return files


def _reasons(stderr: str) -> dict[str, str]:
    """Read `<path>: not labelled: <reason>` lines into file name -> reason."""
    reasons = {}
    for line in stderr.splitlines():
        path, marker, reason = line.partition(": not labelled: ")
        if marker:
            reasons[Path(path).name] = reason
    return reasons


def test_predict_labels_the_good_files_and_names_each_bad_one_with_prepares_reason(
    tmp_path: Path, model_file: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # capfd: what the C decoders print (mpg123's "Note: Illegal Audio-MPEG-Header") counts too.
    bad = _bad_files(tmp_path / "data" / "x")
    good = [write_wav(tmp_path / "data" / "x" / f"good{i}.wav", tone(300.0 * (i + 1), 1.2))
            for i in range(2)]
    status, out, err = run(capfd, "predict", "--model", str(model_file), str(good[0]),
                           *map(str, bad.values()), str(tmp_path / "missing.wav"),
                           str(tmp_path / "data"), str(good[1]))
    assert status == 2
    labelled = [line.split(": ")[0] for line in out.splitlines()]
    assert labelled == [str(good[0]), str(good[1])]  # both, in order, around the bad ones
    reasons = _reasons(err)
    assert set(reasons) == {*bad, "missing.wav", "data"}
    # The same reason `prepare` gives when it excludes the same file: one check for both.
    _, excluded = build_manifest(tmp_path / "data", progress=False)
    assert {Path(item.path).name: item.reason for item in excluded} == {
        name: reason for name, reason in reasons.items() if name in bad}
    assert "digital silence" in reasons["silent.wav"] and "NaN" in reasons["nan.wav"]
    assert "too short" in reasons["one_sample.wav"] and "too short" in reasons["short.wav"]
    assert "truncated" in reasons["cut.wav"] and "empty" in reasons["empty.wav"]
    # Not sound: named for the file, never blamed on the model's weights.
    assert reasons["huge.wav"].startswith("samples reach 8e+36, far outside audio's ±1")
    assert reasons["one_hertz.wav"].startswith("sample rate 1 Hz is no recording's")
    assert reasons["cancelling.wav"].startswith("its 2 channels cancel out when mixed to mono")
    assert "weights" not in err
    assert "file not found" in reasons["missing.wav"] and "is a folder" in reasons["data"]
    assert "no audio stream found" in reasons["text.mp3"]
    # One line per bad file, the note that this model has no reject threshold (once), then the
    # summary line; no traceback.
    assert err.count("\n") == len(reasons) + 2 and "Traceback" not in err
    assert err.count("has no reject threshold") == 1
    assert err.splitlines()[-1].startswith(f"audiocls predict: error: {len(reasons)} of "
                                           f"{len(reasons) + 2} file(s) could not be labelled")


def test_predict_json_holds_the_failures_too(tmp_path: Path, model_file: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import json

    good = write_wav(tmp_path / "good.wav", tone(440.0, 1.0))
    silent = write_wav(tmp_path / "silent.wav", np.zeros(22050, np.float32))
    status, out, err = run(capsys, "predict", "--model", str(model_file), str(silent), str(good),
                           "--json")
    assert status == 2 and "1 of 2 file(s) could not be labelled" in err
    first, second = json.loads(out)
    assert first == {"path": str(silent), "error": "digital silence (every sample is 0)"}
    assert len(second["top"]) == 3


def test_predict_names_an_unreadable_file(tmp_path: Path, model_file: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    good = write_wav(tmp_path / "good.wav", tone(440.0, 1.0))
    locked = write_wav(tmp_path / "locked.wav", tone(440.0, 1.0))
    original = audio.sf.SoundFile

    def soundfile(path: bytes, *args: object, **kwargs: object) -> sf.SoundFile:
        if Path(os.fsdecode(path)).name == "locked.wav":  # chmod 000 means nothing to root
            raise PermissionError(13, "Permission denied")
        return original(path, *args, **kwargs)

    monkeypatch.setattr(audio.sf, "SoundFile", soundfile)
    status, out, err = run(capsys, "predict", "--model", str(model_file), str(locked), str(good))
    assert status == 2 and out.startswith(f"{good}: ")
    assert _reasons(err)["locked.wav"].startswith("permission denied")


def test_predict_labels_a_file_whose_name_is_not_utf8(tmp_path: Path, model_file: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    write_wav(tmp_path / "cafe.wav", tone(440.0, 1.0))
    name = os.path.join(os.fsencode(tmp_path), b"caf\xe9.wav")  # Latin-1
    os.rename(tmp_path / "cafe.wav", name)
    status, out, _ = run(capsys, "predict", "--model", str(model_file), os.fsdecode(name))
    assert status == 0 and out.startswith(f"{tmp_path}/caf\\xe9.wav: ")


@pytest.mark.parametrize("top_k", ["0", "-2"])
def test_top_k_below_one_is_refused_before_any_work(tmp_path: Path, top_k: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # The model file does not even exist: the setting is checked first.
    status, out, err = run(capsys, "predict", "--model", str(tmp_path / "none.pt"),
                           str(tmp_path / "x.wav"), "--top-k", top_k)
    assert status == 2 and out == "" and err.count("\n") == 1
    assert f"--top-k must be a whole number of at least 1, not {top_k}" in err


def test_top_k_above_the_class_count_shows_every_class(tmp_path: Path, model_file: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    good = write_wav(tmp_path / "good.wav", tone(440.0, 1.0))
    status, out, _ = run(capsys, "predict", "--model", str(model_file), str(good),
                         "--top-k", "50")
    assert status == 0 and sorted(part.split()[0] for part in
                                  out.split(": ", 1)[1].split(", ")) == CLASSES


@pytest.mark.parametrize("change,says", [
    ("class count", "head has 3 outputs for 4 classes"),
    ("unknown model", "unknown model 'resnet1800'"),
    ("absurd num_frames", "num_frames 1000000000 is not between 1 and"),
    ("std 0", "feature std (0.0) is not a finite number above 0"),
    ("std 0 in the weights only", "std in its weights (0.0) is not a finite number above 0"),
    ("missing key", "model file lacks ['class_names']"),
    ("weights of another model", "weights do not fit a resnet18"),
    ("recipe not a table", "recipe is not a table of settings"),
    ("hop of 0", "feature settings, image size or batch size are not positive"),
    ("segment length not a number", "segment length, window hop (a fraction in (0, 1]) or f_min "
                                    "is not a number"),
    ("f_min above f_max", "Mel band, f_min 20000.0 to f_max 11025.0 Hz, is no band"),
])
def test_a_tampered_model_file_is_refused_in_one_line(
    tmp_path: Path, bundle: dict[str, Any], change: str, says: str,
    capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "model.pt"
    torch.save(tampered_bundle(bundle, change), path)
    clip = write_wav(tmp_path / "clip.wav", tone(440.0, 1.0))
    status, out, err = run(capsys, "predict", "--model", str(path), str(clip))
    assert status == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"audiocls predict: error: {path}: ") and says in err
    assert "re-export it from its run folder or retrain it" in err


def test_nan_probabilities_stop_with_one_line(tmp_path: Path, bundle: dict[str, Any],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    damaged = tampered_bundle(bundle, "NaN")
    path = tmp_path / "model.pt"
    torch.save(damaged, path)
    clip = write_wav(tmp_path / "clip.wav", tone(440.0, 1.0))
    status, out, err = run(capsys, "predict", "--model", str(path), str(clip))
    assert status == 2 and out == "" and err.count("\n") == 1
    assert f"{path}: the model gives NaN or infinite probabilities" in err


class Payload:
    """A pickle that would run a shell command if unpickled."""

    def __reduce__(self) -> tuple[Any, ...]:
        return os.system, ("touch /tmp/audiocls-pwned",)


@pytest.mark.parametrize("kind", ["raw pickle", "torch.save", "junk"])
def test_a_file_that_is_no_model_is_refused_without_pytorchs_unsafe_advice(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "model.pt"
    if kind == "raw pickle":
        path.write_bytes(pickle.dumps(Payload()))
    elif kind == "torch.save":
        torch.save({"weights": Payload()}, path)
    else:
        path.write_bytes(b"hello world" * 10)  # the unpickler raises KeyError on this
    status, _, err = run(capsys, "predict", "--model", str(path), "x.wav")
    assert status == 2 and err.count("\n") == 1, err
    assert f"{path}: not a readable audiocls model" in err
    assert "nothing from the file was executed" in err
    assert "weights_only" not in err and "arbitrary code" not in err
    if kind == "torch.save":
        assert "GLOBAL posix.system" in err


def test_predict_decodes_each_file_once_and_a_long_one_twice(tmp_path: Path, model_file: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # The check and the features come from one decoding pass; a file longer than KEEP_SECONDS
    # is read again to stream its windows (its log-Mel is not kept: memory stays flat).
    opened: list[str] = []
    real_open = audio._open

    def spy(path: Path):  # noqa: ANN202 - soundfile.SoundFile
        opened.append(Path(path).name)
        return real_open(path)

    monkeypatch.setattr(audio, "_open", spy)
    good = write_wav(tmp_path / "good.wav", tone(440.0, 1.0))
    long = write_wav(tmp_path / "long.wav", tone(440.0, 3.0))
    silent = write_wav(tmp_path / "silent.wav", np.zeros(22050 * 3, np.float32))
    monkeypatch.setattr(predict, "KEEP_SECONDS", 2.0)
    status, _, err = run(capsys, "predict", "--model", str(model_file), str(good), str(long),
                         str(silent))
    assert status == 2 and "silent.wav" in err
    assert sorted(opened) == ["good.wav", "long.wav", "long.wav", "silent.wav"]


def test_ctrl_c_keeps_the_finished_files_and_json_stays_a_document(
        tmp_path: Path, model_file: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from audiocls_utils.predict import Predictor

    clips = [write_wav(tmp_path / f"{i}.wav", tone(300.0 + 100 * i, 1.0)) for i in range(3)]
    real = Predictor.file_probabilities

    def interrupted_on_the_last(self: Predictor, path: Path, scan: Any) -> torch.Tensor:
        if Path(path).name == "2.wav":
            raise KeyboardInterrupt
        return real(self, path, scan)

    monkeypatch.setattr(Predictor, "file_probabilities", interrupted_on_the_last)
    status, out, err = run(capsys, "predict", "--model", str(model_file), *map(str, clips))
    assert status == 130 and [line.split(":")[0] for line in out.splitlines()] == [
        str(clips[0]), str(clips[1])]
    assert "2 of 3 file(s) done before the interrupt" in err
    status, out, _ = run(capsys, "predict", "--model", str(model_file), *map(str, clips), "--json")
    assert status == 130 and [r["path"] for r in json.loads(out)] == [str(c) for c in clips[:2]]


def test_a_run_folder_as_model_uses_its_model_pt_and_one_without_is_named(
        tmp_path: Path, bundle: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    good = write_wav(tmp_path / "good.wav", tone(440.0, 1.0))
    (tmp_path / "run").mkdir()
    torch.save(bundle, tmp_path / "run" / "model.pt")
    status, out, _ = run(capsys, "predict", "--model", str(tmp_path / "run"), str(good))
    assert status == 0 and out.startswith(f"{good}: ")
    (tmp_path / "empty").mkdir()
    status, _, err = run(capsys, "predict", "--model", str(tmp_path / "empty"), str(good))
    assert status == 2 and err.count("\n") == 1
    assert f"{tmp_path / 'empty'} is a folder with no model.pt: name a model file" in err


def test_a_fifo_is_called_a_pipe_not_an_empty_file(tmp_path: Path, model_file: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    good = write_wav(tmp_path / "good.wav", tone(440.0, 1.0))
    os.mkfifo(tmp_path / "fifo.wav")  # what <(cat song.wav) passes; opening it would block
    status, out, err = run(capsys, "predict", "--model", str(model_file), str(tmp_path / "fifo.wav"),
                           str(good))
    assert status == 2 and out.startswith(f"{good}: ")
    assert _reasons(err)["fifo.wav"].startswith("a pipe (a FIFO or a process substitution <(...)), "
                                                "not a file")
    assert "empty" not in err
