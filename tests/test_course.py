"""The notebooks' session: profile, dataset and working folder from the environment; features from
the cache; runs saved from a notebook and reused only when they match; the small lessons'
numbers; the static and interactive explorers; make demo."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pandas as pd
import pytest
import run_notebooks as notebooks  # scripts/ (tests/conftest.py puts it on the path)
import soundfile as sf
import torch
from helpers import stub_gpu
from run_notebooks import notebook_headline

from audiocls_utils import course
from audiocls_utils.audio import load_audio
from audiocls_utils.config import apply_profile, get_recipe
from audiocls_utils.course import (
    Course,
    DatasetInfo,
    Run,
    compare_runs,
    explore,
    find_dataset,
    read_run,
    recipe_table,
    resolve_profile,
    tracking_mode,
    widgets_enabled,
    workdir,
)
from audiocls_utils.data import build_manifest, limit_per_class, make_splits, save_manifest
from audiocls_utils.engine.experiment.run_folder import finish_run, run_record
from audiocls_utils.errors import AudioclsError
from audiocls_utils.features import LogMel
from audiocls_utils.files import save_torch, write_csv, write_json

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae",
          "rock")


def test_profile_comes_from_argument_then_environment_then_device(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIOCLS_PROFILE", "smoke")
    assert resolve_profile("full", "cpu") == ("full", "set in the parameters cell")
    assert resolve_profile(None, "cpu") == ("smoke", "set by AUDIOCLS_PROFILE")
    monkeypatch.delenv("AUDIOCLS_PROFILE")
    assert resolve_profile(None, "cpu")[0] == "cpu"
    stub_gpu(monkeypatch, "Tesla T4", total_gib=14.6, major=7)
    profile, why = resolve_profile(None, "cuda")
    assert profile == "gpu16" and "Tesla T4 has 14.6 GiB" in why
    # A fresh Colab: a T4 and no GTZAN. Generating a GTZAN-sized built-in set would take minutes.
    profile, why = resolve_profile(None, "cuda", built_in_set=True)
    assert profile == "cpu" and "no GTZAN here" in why and "AUDIOCLS_PROFILE=gpu16" in why
    assert resolve_profile("gpu16", "cuda", built_in_set=True)[0] == "gpu16"  # asked for: kept
    with pytest.raises(AudioclsError, match="laptop"):
        resolve_profile("laptop", "cpu")


def test_tracking_is_off_for_smoke_and_offline_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWANLAB_MODE", raising=False)
    assert tracking_mode("smoke") == "disabled"
    assert tracking_mode("cpu") == "offline"
    monkeypatch.setenv("SWANLAB_MODE", "disabled")
    assert tracking_mode("full") == "disabled"


def test_workdir_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUDIOCLS_WORKDIR", str(tmp_path / "w"))
    assert workdir() == (tmp_path / "w").resolve() and (tmp_path / "w").is_dir()


def test_kaggle_layout_is_found_and_named_gtzan(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    for genre in GENRES:
        (tmp_path / "kaggle" / "Data" / "genres_original" / genre).mkdir(parents=True)
    monkeypatch.setenv("AUDIOCLS_DATA", str(tmp_path / "kaggle"))
    info = find_dataset(None, "cpu")
    assert info.root == (tmp_path / "kaggle" / "Data" / "genres_original").resolve()
    assert info.name == "GTZAN" and not info.synthetic
    other = find_dataset(str(tmp_path / "kaggle" / "Data" / "genres_original" / "blues"), "cpu")
    assert other.name == "dataset blues"
    monkeypatch.setattr(course, "course_root", lambda: tmp_path)
    monkeypatch.chdir(tmp_path / "kaggle" / "Data")  # like a notebook running in notebooks/
    assert find_dataset("kaggle", "cpu").root == info.root  # read from the course folder


def test_synthetic_set_is_generated_once_per_profile_in_the_workdir(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUDIOCLS_WORKDIR", str(tmp_path))
    monkeypatch.setenv("AUDIOCLS_DATA", "synthetic")
    monkeypatch.setitem(course.SYNTH_SIZES, "smoke", (2, 0.25))
    info = find_dataset(None, "smoke", progress=False)
    assert info.root == tmp_path / "data" / "synthetic-smoke" / "genres"
    assert info.synthetic and (info.root / "groups.csv").is_file() and "NOT GTZAN" in info.describe()
    assert len(list(info.root.glob("*/*.wav"))) == 20
    stamp = (info.root / "blues" / "blues.00000.wav").stat().st_mtime_ns
    assert find_dataset("synthetic", "smoke", progress=False).root == info.root
    assert (info.root / "blues" / "blues.00000.wav").stat().st_mtime_ns == stamp


def _course(tmp_path: Path, root: Path, seed: int = 42) -> Course:
    return Course("smoke", torch.device("cpu"), seed, DatasetInfo(root, "tones", False), tmp_path,
                  "disabled")


def test_manifest_is_reused_only_for_the_same_data_and_seed(
        tmp_path: Path, tone_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = _course(tmp_path / "w", tone_dataset).manifest()
    assert "written" in capsys.readouterr().out
    again = _course(tmp_path / "w", tone_dataset).manifest()
    assert "reused" in capsys.readouterr().out
    pd.testing.assert_frame_equal(first[["path", "label", "split"]], again[["path", "label", "split"]])
    _course(tmp_path / "w", tone_dataset, seed=7).manifest()
    assert "written" in capsys.readouterr().out
    assert set(first["split"]) == {"train", "val", "test"} and len(first) == 36


def _fake_run(folder: Path, manifest: pd.DataFrame, recipe_name: str = "baseline",
              seed: int = 42) -> Run:
    """Write the files of a finished run by hand (what run_experiment leaves)."""
    recipe = apply_profile(get_recipe(recipe_name), "smoke")
    used = limit_per_class(manifest, recipe.clips_per_class, seed=seed)
    save_manifest(used, folder / "manifest.csv")
    finish_run(folder, run_record(recipe, seed, None, used))
    write_json(folder / "recipe.json", recipe.to_dict())
    save_torch({}, folder / "model.pt")  # its presence is what a finished run needs here
    write_json(folder / "metrics.json", {"seed": seed, "classes": ["a", "b"],
                                         "test": {"accuracy": 0.75, "macro_f1": 0.7}})
    write_csv(pd.DataFrame({"epoch": [1, 2], "train_acc": [0.5, 0.9], "val_acc": [0.6, 0.8],
                            "train_loss": [1.0, 0.4], "val_loss": [0.9, 0.7],
                            "seconds": [30.0, 30.0]}), folder / "history.csv")
    return read_run(folder)


def test_a_run_is_reused_only_with_the_same_recipe_split_and_seed(
        tmp_path: Path, tone_dataset: Path) -> None:
    manifest = make_splits(build_manifest(tone_dataset, progress=False)[0], "random", seed=42)
    session = _course(tmp_path, tone_dataset)
    recipe = session.recipe("baseline")
    _fake_run(session.run_dir(recipe), manifest)
    assert session.finished_run(recipe, manifest).test_accuracy == 0.75
    assert _course(tmp_path, tone_dataset, seed=0).finished_run(recipe, manifest) is None
    assert session.finished_run(replace(recipe, lr=1e-3), manifest) is None
    assert session.finished_run(recipe, make_splits(manifest, "random", seed=1)) is None
    (session.run_dir(recipe) / "model.pt").unlink()  # not finished: no model
    assert session.finished_run(recipe, manifest) is None
    _fake_run(session.run_dir(recipe), manifest)
    (session.run_dir(recipe) / "run.json").unlink()  # nothing vouches for the clips' content
    assert session.finished_run(recipe, manifest) is None
    with pytest.raises(AudioclsError, match="not a finished run"):
        read_run(tmp_path / "missing")


def test_a_run_is_not_reused_once_its_clips_hold_new_content_at_the_same_size(
        tmp_path: Path, tone_dataset: Path) -> None:
    # Before: chapter 04 reused the baseline trained on the clips as they were.
    manifest = make_splits(build_manifest(tone_dataset, progress=False)[0], "random", seed=42)
    session = _course(tmp_path, tone_dataset)
    recipe = session.recipe("baseline")
    _fake_run(session.run_dir(recipe), manifest)
    assert session.finished_run(recipe, manifest) is not None
    for path in manifest["path"]:
        size = Path(path).stat().st_size
        samples, rate = sf.read(path, dtype="float32")
        sf.write(path, -samples, rate, subtype="PCM_16")  # new content, the same size
        assert Path(path).stat().st_size == size
    assert session.finished_run(recipe, manifest) is None


def test_recipe_table_shows_exactly_what_the_course_fixed() -> None:
    table = recipe_table({"original": get_recipe("original-baseline"),
                          "course": get_recipe("baseline")})
    assert sorted(table.index) == ["feature.to_db", "feature.top_db", "normalize"]
    assert table.loc["feature.to_db"].tolist() == [False, True]
    assert len(recipe_table({"a": get_recipe("baseline")}, differences_only=False)) > 20


def test_compare_runs_reports_best_validation_beside_the_test_set(
        tmp_path: Path, tone_dataset: Path) -> None:
    manifest = make_splits(build_manifest(tone_dataset, progress=False)[0], "random")
    table = compare_runs([_fake_run(tmp_path / "run", manifest)])
    row = table.loc["baseline@smoke"]
    assert row["model"] == "resnet18" and row["parameters (M)"] == 11.2  # 11,177,538 with 2 classes
    assert row["best val acc"] == 0.8 and row["test acc"] == 0.75
    assert row["train time (min)"] == 1.0


def test_widgets_follow_the_environment_and_need_a_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIOCLS_WIDGETS", "0")
    assert not widgets_enabled()
    monkeypatch.setenv("AUDIOCLS_WIDGETS", "1")
    assert widgets_enabled()
    monkeypatch.delenv("AUDIOCLS_WIDGETS")
    assert not widgets_enabled()  # pytest is no Jupyter kernel


def test_explore_draws_once_statically_and_builds_sliders_interactively(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import IPython.display

    calls, shown = [], []

    def draw(n_fft: int, n_mels: int) -> None:
        calls.append((n_fft, n_mels))

    sliders = {"n_fft": [1024, 2048], "n_mels": [64, 128]}
    explore(draw, sliders, interactive=False)
    assert calls == [(1024, 64)] and "Static figure" in capsys.readouterr().out
    explore(draw, sliders, {"n_fft": 2048}, interactive=False)
    assert calls[-1] == (2048, 64)
    monkeypatch.setattr(IPython.display, "display", shown.append)
    explore(draw, sliders, {"n_mels": 128}, interactive=True)
    assert calls[-1] == (1024, 128)  # drawn once with the defaults
    controls = {child.description: child for child in shown[0].children if hasattr(child, "options")}
    assert list(controls["n_fft"].options) == [1024, 2048]
    controls["n_fft"].value = 2048  # moving a slider redraws with the new value
    assert calls[-1] == (2048, 128)
    plt.close("all")


def test_headline_is_the_last_headline_line_printed(capsys: pytest.CaptureFixture[str]) -> None:
    course.headline("test accuracy 0.9")
    assert capsys.readouterr().out == "Headline: test accuracy 0.9\n"
    printed = ["x\nHeadline: first\n", "Headline: second\n"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text=text)]) for text in printed])
    assert notebook_headline(notebook) == "second"
    assert notebook_headline(nbformat.v4.new_notebook()) == ""


@pytest.mark.slow
def test_demo_runner_executes_notebooks_into_html(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AUDIOCLS_WORKDIR", str(tmp_path / "work"))
    for variable in ("AUDIOCLS_PROFILE", "AUDIOCLS_WIDGETS", "AUDIOCLS_DATA"):
        monkeypatch.delenv(variable, raising=False)
    source = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Tiny"),
        nbformat.v4.new_code_cell("import os\nfrom audiocls_utils.course import headline\n"
                                  "headline(os.environ['AUDIOCLS_PROFILE'] + ' '"
                                  " + os.environ['AUDIOCLS_WIDGETS'])"),
    ])
    good = tmp_path / "good.ipynb"
    nbformat.write(source, good)
    assert notebooks.main(["--out", str(tmp_path / "out"), "--profile", "smoke", str(good)]) == 0
    assert "smoke 0" in capsys.readouterr().out
    executed = nbformat.read(tmp_path / "out" / "good.ipynb", as_version=4)
    assert notebook_headline(executed) == "smoke 0"
    assert "smoke 0" in (tmp_path / "out" / "good.html").read_text()
    source.cells.append(nbformat.v4.new_code_cell("raise ValueError('broken on purpose')"))
    nbformat.write(source, tmp_path / "bad.ipynb")
    assert notebooks.main(["--out", str(tmp_path / "out"), str(tmp_path / "bad.ipynb")]) == 1
    error = capsys.readouterr().err
    assert "ValueError: broken on purpose" in error and "\x1b[" not in error
    assert (tmp_path / "out" / "bad.ipynb").exists()  # the failing copy is kept to look at
    json.loads((tmp_path / "out" / "bad.ipynb").read_text())


def test_reuse_or_train_reads_a_matching_run_without_training(
        tmp_path: Path, tone_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    session = _course(tmp_path / "w", tone_dataset)
    manifest = session.manifest()
    recipe = session.recipe("baseline")
    _fake_run(session.run_dir(recipe), manifest)
    run = session.reuse_or_train(recipe, manifest)  # a fake run: training would overwrite it
    assert "Reusing" in capsys.readouterr().out and run.test_accuracy == 0.75
    assert session.run_dir(recipe) == tmp_path / "w" / "runs" / "baseline-smoke"


def test_setup_notebook_prints_versions_profile_and_dataset(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tone_dataset: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AUDIOCLS_WORKDIR", str(tmp_path / "w"))
    monkeypatch.delenv("SWANLAB_MODE", raising=False)
    session = course.setup_notebook("cpu", str(tone_dataset), seed=3)
    out = capsys.readouterr().out
    assert f"torch {torch.__version__}" in out and "torchaudio" in out
    assert "Profile:  cpu" in out and f"Dataset:  dataset tones at {tone_dataset.resolve()}" in out
    assert session.seed == 3 and session.tracking_mode == "offline" and session.profile == "cpu"
    assert torch.initial_seed() == 3


def test_the_device_is_the_parameter_else_the_variable_else_the_best(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers import stub_gpu

    stub_gpu(monkeypatch, "Tesla T4", 15.0, 7)
    monkeypatch.delenv("AUDIOCLS_DEVICE", raising=False)
    device, why = course.resolve_device(None)
    assert device.type == "cuda" and "the best this machine has" in why
    assert course.resolve_device("cpu") == (torch.device("cpu"), "set in the parameters cell")
    monkeypatch.setenv("AUDIOCLS_DEVICE", "CPU")
    assert course.resolve_device(None) == (torch.device("cpu"), "set by AUDIOCLS_DEVICE")
    assert course.resolve_device("cuda")[0].type == "cuda"  # the parameters cell wins


def test_a_device_this_machine_lacks_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(AudioclsError, match="^DEVICE cuda asks for a CUDA GPU but PyTorch sees none"):
        course.resolve_device("cuda")
    with pytest.raises(AudioclsError, match="^DEVICE 'tpu' is not a device"):
        course.resolve_device("tpu")
    monkeypatch.setenv("AUDIOCLS_DEVICE", "mps")
    with pytest.raises(AudioclsError, match="^AUDIOCLS_DEVICE mps asks for Apple's MPS"):
        course.resolve_device(None)


def test_manifest_with_groups_falls_back_to_the_built_in_set(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tone_dataset: Path) -> None:
    monkeypatch.setenv("AUDIOCLS_WORKDIR", str(tmp_path))
    monkeypatch.setitem(course.SYNTH_SIZES, "smoke", (2, 0.25))
    session = _course(tmp_path, tone_dataset)
    manifest = session.manifest()
    grouped = session.manifest_with_groups(manifest)  # tones name no artist
    assert len(grouped) == 20 and (grouped["group"] != "").all()
    assert session.manifest_with_groups(grouped) is grouped


def test_genre_log_mels_take_the_first_clip_of_each_class(tone_dataset: Path) -> None:
    manifest = build_manifest(tone_dataset, progress=False)[0]
    config = course.FeatureConfig(n_fft=512, hop_length=256, n_mels=32)
    panels = course.genre_log_mels(manifest, config, seconds=0.5)
    assert [label for label, _, _ in panels] == ["high", "low", "mid"]
    assert all(log_mel.shape == (32, config.seconds_to_frames(0.5)) for _, log_mel, _ in panels)


def test_show_clip_plots_and_plays_at_most_max_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    monkeypatch.setattr(plt, "show", lambda: None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # silence must not divide by a zero peak
        course.show_clip(np.zeros(22050 * 3, np.float32), 22050, "silence", max_seconds=1.0)
    assert len(shown) == 1 and isinstance(shown[0], IPython.display.Audio)
    assert plt.gcf().axes[0].get_xlim() == (0.0, 1.0)
    plt.close("all")


def test_log_mels_come_from_the_cache_one_per_manifest_row(tmp_path: Path, tone_dataset: Path
                                                           ) -> None:
    session = _course(tmp_path / "w", tone_dataset)
    manifest = session.manifest()
    config = course.FeatureConfig(n_fft=512, hop_length=256, n_mels=32)
    log_mels = session.log_mels(manifest, config)
    assert len(log_mels) == len(manifest)
    first = LogMel(config)(load_audio(manifest["path"].iloc[0], config.sample_rate))
    np.testing.assert_allclose(np.asarray(log_mels[0][...], np.float32), first.numpy(), atol=0.05)
    again = session.log_mels(manifest, config)  # read back, not computed: the same values
    np.testing.assert_array_equal(np.asarray(again[3][...]), np.asarray(log_mels[3][...]))


@pytest.mark.slow
def test_a_run_saved_from_a_notebook_is_reused_and_predicts(tmp_path: Path, tone_dataset: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    from audiocls_utils.models import create_model
    from audiocls_utils.predict import Predictor

    session = _course(tmp_path / "w", tone_dataset)
    manifest = session.manifest()
    recipe = session.recipe("baseline")
    model = create_model(recipe.model, 3, recipe.image_size, 5.0, 10.0, pretrained="no")
    history = pd.DataFrame({"epoch": [1], "lr": [1e-4], "train_loss": [1.0], "train_acc": [0.5],
                            "val_loss": [1.1], "val_acc": [0.4]})
    run = session.save_run(recipe, model, ["high", "low", "mid"], 40, history,
                           {"best_epoch": 1, "val": {"accuracy": 0.4}, "test": {"accuracy": 0.5}},
                           manifest)
    assert run.test_accuracy == 0.5 and run.recipe == recipe and run.metrics["seed"] == 42
    assert session.reuse_or_train(recipe, manifest).output_dir == run.output_dir
    assert "Reusing" in capsys.readouterr().out
    predictor = Predictor.from_file(run.output_dir / "model.pt")
    assert float(predictor.model[0].mean) == 5.0 and float(predictor.model[0].std) == 10.0
    assert predictor.probabilities([manifest["path"].iloc[0]]).shape == (1, 3)
