"""Plumbing for the course's notebooks: profile, dataset, working folder, runs, and `make demo`.

Every notebook starts with `course = setup_notebook(...)`. What it reads (all optional):

- AUDIOCLS_PROFILE: smoke | cpu | full (default: full on a CUDA GPU, cpu elsewhere)
- AUDIOCLS_DATA: a dataset folder (GTZAN's `genres/` and Kaggle's `Data/genres_original/` are
  found inside it), or `synthetic` for the built-in set. Default: `data/GTZAN` in the course
  folder when it exists, else the built-in synthetic set.
- AUDIOCLS_WORKDIR: where notebooks write (default: `outputs/course` in the course folder):
  `data/synthetic-<profile>/` (the built-in set), `manifest.csv` (+ `manifest.json`, what it was
  built from), `runs/<recipe>-<profile>/` (one training run each), `runs/swanlog/` (SwanLab).
- AUDIOCLS_WIDGETS: 0 draws static figures where a notebook would show ipywidgets sliders.

`python -m audiocls_utils.course` executes the notebooks into `outputs/notebooks/` (executed
copies and HTML) and prints each one's headline: that is `make demo`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from .config import PROFILES, FeatureConfig, Recipe, apply_profile, default_profile, get_recipe
from .data import (
    build_manifest,
    find_data_root,
    limit_per_class,
    load_manifest,
    make_splits,
    save_manifest,
)
from .errors import AudioclsError
from .files import write_bytes, write_json
from .synth import GENRES, generate_dataset  # GTZAN's ten genres, which the built-in set copies
from .tracking import resolve_mode
from .train import pick_device, run_experiment, seed_everything

PROFILE_ENV, DATA_ENV, WORKDIR_ENV, WIDGETS_ENV = (
    "AUDIOCLS_PROFILE", "AUDIOCLS_DATA", "AUDIOCLS_WORKDIR", "AUDIOCLS_WIDGETS")
SYNTHETIC = ("synthetic", "builtin", "built-in")  # AUDIOCLS_DATA values that ask for the built-in set

# Size of the built-in set per profile: (clips per genre, seconds per clip). `full` is GTZAN's size.
SYNTH_SIZES = {"smoke": (8, 2.0), "cpu": (30, 6.0), "full": (100, 30.0)}
PROFILE_NOTES = {
    "smoke": "seconds per notebook, for tests: tiny data, 2 epochs, numbers mean nothing",
    "cpu": "laptop-sized: minutes per notebook on 2 cores",
    "full": "the recipes as written: needs a GPU",
}
HEADLINE = "Headline: "  # the line `make demo` picks out of each executed notebook
NOTEBOOKS = ("01_dataset_exploration", "02_spectrogram_visualization", "03_baseline_resnet18",
             "04_advanced_resnext")


# ----------------------------------------------------------------------------- where things are

def course_root() -> Path:
    """Return the course folder (holding notebooks/ and audiocls_utils/), else the working folder."""
    here = Path.cwd().resolve()
    for folder in (Path(__file__).resolve().parents[1], here, *here.parents):
        if (folder / "notebooks").is_dir() and (folder / "audiocls_utils").is_dir():
            return folder
    return here


def workdir() -> Path:
    """Return (and create) the folder notebooks write to: $AUDIOCLS_WORKDIR or outputs/course."""
    folder = Path(os.environ.get(WORKDIR_ENV) or course_root() / "outputs" / "course").expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    return folder.resolve()


def resolve_profile(profile: str | None, device: torch.device | str) -> str:
    """Return the profile: the argument, else $AUDIOCLS_PROFILE, else full on CUDA and cpu elsewhere."""
    chosen = (profile or os.environ.get(PROFILE_ENV) or default_profile(str(device))).lower()
    if chosen not in PROFILES:
        raise AudioclsError(f"Unknown profile {chosen!r} (from {PROFILE_ENV} or the parameters "
                            f"cell); choose one of {list(PROFILES)}")
    return chosen


def tracking_mode(profile: str) -> str:
    """Return the SwanLab mode: disabled for smoke, else $SWANLAB_MODE, else local (no account)."""
    return "disabled" if profile == "smoke" else resolve_mode(None)


# ----------------------------------------------------------------------------- which dataset

@dataclass(frozen=True)
class DatasetInfo:
    """The dataset a notebook uses: its folder of class folders and what it is."""

    root: Path
    name: str
    synthetic: bool

    @property
    def has_groups(self) -> bool:
        """Return True when a groups.csv names each clip's artist or speaker."""
        return (self.root / "groups.csv").is_file()

    def describe(self) -> str:
        """Return a line naming the dataset and its folder (and a warning line if synthetic)."""
        note = "\n          synthetic music, NOT GTZAN: accuracies on it say nothing about GTZAN"
        return f"{self.name} at {self.root}{note if self.synthetic else ''}"


def synthetic_dataset(profile: str, folder: Path | None = None, progress: bool = True
                      ) -> DatasetInfo:
    """Generate (or reuse) the built-in set sized for `profile` under `folder` (default: workdir/data)."""
    clips, seconds = SYNTH_SIZES[profile]
    out = (folder or workdir() / "data") / f"synthetic-{profile}"
    root = generate_dataset(out, clips_per_class=clips, seconds=seconds, progress=progress)
    return DatasetInfo(root, f"built-in synthetic set, {clips} clips x {seconds:g} s per genre",
                       synthetic=True)


def find_dataset(data: str | None, profile: str, progress: bool = True) -> DatasetInfo:
    """Return the dataset: `data` or $AUDIOCLS_DATA, else data/GTZAN if present, else the built-in set.

    A relative path is read from the working folder, else from the course folder.
    """
    chosen = data or os.environ.get(DATA_ENV)
    if chosen and chosen.lower() in SYNTHETIC:
        return synthetic_dataset(profile, progress=progress)
    if not chosen:
        gtzan = course_root() / "data" / "GTZAN"
        if not gtzan.is_dir():
            return synthetic_dataset(profile, progress=progress)
        chosen = str(gtzan)
    path = Path(chosen).expanduser()
    if not path.is_absolute() and not path.exists():  # relative to the course folder, e.g. data/GTZAN
        path = course_root() / path
    root = find_data_root(path).resolve()
    folders = {p.name for p in root.iterdir() if p.is_dir()}
    is_synthetic = (root / ".synth.json").is_file()
    if is_synthetic:
        name = "synthetic set"
    elif set(GENRES) <= folders:
        name = "GTZAN"
    else:
        name = f"dataset {path.name}"
    return DatasetInfo(root, name, synthetic=is_synthetic)


# ----------------------------------------------------------------------------- runs

@dataclass
class Run:
    """A finished training run read back from its folder (what `run_experiment` wrote)."""

    name: str
    recipe: Recipe
    metrics: dict[str, Any]
    history: pd.DataFrame
    output_dir: Path

    @property
    def test_accuracy(self) -> float:
        """Return the test-set accuracy of the model chosen on validation."""
        return float(self.metrics["test"]["accuracy"])


def read_run(output_dir: str | Path) -> Run:
    """Read metrics.json, history.csv and recipe.json of a finished run."""
    output_dir = Path(output_dir)
    needed = [output_dir / name for name in ("metrics.json", "history.csv", "recipe.json")]
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        raise AudioclsError(f"{output_dir} is not a finished run (missing {missing})")
    recipe = Recipe.from_dict(json.loads(needed[2].read_text()))
    return Run(recipe.name, recipe, json.loads(needed[0].read_text()), pd.read_csv(needed[1]),
               output_dir)


def same_run_inputs(run_dir: Path, manifest: pd.DataFrame, recipe: Recipe, seed: int) -> bool:
    """Return True when `run_dir` holds a finished run of `recipe` on this manifest and seed."""
    try:
        run = read_run(run_dir)
        used = load_manifest(run_dir / "manifest.csv")
    except AudioclsError:
        return False
    expected = limit_per_class(manifest, recipe.clips_per_class, seed=seed)
    columns = ["path", "label", "split"]
    return (run.recipe == recipe and run.metrics.get("seed") == seed
            and used[columns].reset_index(drop=True).equals(expected[columns].reset_index(drop=True)))


# ----------------------------------------------------------------------------- the notebook session

@dataclass
class Course:
    """What a notebook works with: profile, device, seed, dataset and working folder."""

    profile: str
    device: torch.device
    seed: int
    dataset: DatasetInfo
    workdir: Path
    tracking_mode: str

    @property
    def manifest_path(self) -> Path:
        """Return the manifest file the notebooks share (written by 01, rebuilt when needed)."""
        return self.workdir / "manifest.csv"

    @property
    def swanlog_dir(self) -> Path:
        """Return SwanLab's folder: `swanlab watch` it to see and compare the runs."""
        return self.workdir / "runs" / "swanlog"

    def _manifest_source(self) -> dict[str, Any]:
        return {"data_root": str(self.dataset.root), "split": "random", "seed": self.seed}

    def save_manifest(self, manifest: pd.DataFrame) -> Path:
        """Write the manifest and what it was built from (so later notebooks can reuse it)."""
        save_manifest(manifest, self.manifest_path)
        write_json(self.manifest_path.with_suffix(".json"), self._manifest_source())
        return self.manifest_path

    def manifest(self) -> pd.DataFrame:
        """Return the dataset's manifest with the seeded per-class random split, cached on disk."""
        source = self.manifest_path.with_suffix(".json")
        try:
            if json.loads(source.read_text()) == self._manifest_source():
                manifest = load_manifest(self.manifest_path)
                print(f"Manifest: {len(manifest)} clips, reused from {self.manifest_path}")
                return manifest
        except (OSError, ValueError, AudioclsError):
            pass
        manifest, excluded = build_manifest(self.dataset.root, progress=False)
        for item in excluded:
            print(f"Excluded {item}")
        manifest = make_splits(manifest, "random", seed=self.seed)
        self.save_manifest(manifest)
        print(f"Manifest: {len(manifest)} clips, written to {self.manifest_path}")
        return manifest

    def manifest_with_groups(self, manifest: pd.DataFrame) -> pd.DataFrame:
        """Return `manifest` if every clip names its artist (group), else the built-in set's manifest."""
        if (manifest["group"].fillna("") != "").all():
            return manifest
        print(f"The {self.dataset.name} clips name no artist; this lesson uses the built-in set, "
              "whose groups.csv does")
        size = "smoke" if self.profile == "smoke" else "cpu"  # a GTZAN-sized set would take minutes
        return build_manifest(synthetic_dataset(size, progress=False).root, progress=False)[0]

    def recipe(self, name: str) -> Recipe:
        """Return the named recipe scaled to this notebook's profile."""
        return apply_profile(get_recipe(name), self.profile)

    def run_dir(self, recipe: Recipe) -> Path:
        """Return the folder of a recipe's run, e.g. runs/baseline-cpu."""
        return self.workdir / "runs" / recipe.name.replace("@", "-")

    def train(self, recipe: Recipe, manifest: pd.DataFrame | None = None) -> Run:
        """Train `recipe` on the course manifest and return the finished run."""
        manifest = self.manifest() if manifest is None else manifest
        run_experiment(manifest, recipe, self.run_dir(recipe), device=self.device, seed=self.seed,
                       tracking_mode=self.tracking_mode, progress=False)
        return read_run(self.run_dir(recipe))

    def reuse_or_train(self, recipe: Recipe, manifest: pd.DataFrame | None = None) -> Run:
        """Return the run of `recipe` left by an earlier notebook if it used this data, else train it."""
        manifest = self.manifest() if manifest is None else manifest
        folder = self.run_dir(recipe)
        if same_run_inputs(folder, manifest, recipe, self.seed):
            print(f"Reusing the finished run in {folder} (same recipe, split and seed)")
            return read_run(folder)
        print(f"No matching run in {folder}: training {recipe.name} now")
        return self.train(recipe, manifest)


def _use_inline_figures() -> None:
    """Show figures inline when running in a Jupyter kernel, whatever MPLBACKEND says."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and getattr(shell, "kernel", None) is not None:
        shell.run_line_magic("matplotlib", "inline")


def setup_notebook(profile: str | None = None, data: str | None = None, seed: int = 42,
                   progress: bool | None = None) -> Course:
    """Pick device and profile, seed everything, find the dataset, and print what is used.

    Progress bars (generating the built-in set) show only where widgets render (see widgets_enabled).
    """
    import torchaudio

    from . import __version__

    _use_inline_figures()
    plt.rcParams.update({"figure.dpi": 100, "axes.titlesize": 11})
    device = pick_device()
    chosen = resolve_profile(profile, device)
    seed_everything(seed)
    dataset = find_dataset(data, chosen, progress=widgets_enabled() if progress is None else progress)
    course = Course(chosen, device, seed, dataset, workdir(), tracking_mode(chosen))
    print(f"audiocls_utils {__version__} | torch {torch.__version__} | torchaudio "
          f"{torchaudio.__version__} | Python {platform.python_version()}")
    threads = f" ({torch.get_num_threads()} threads)" if device.type == "cpu" else ""
    print(f"Device:   {device}{threads}")
    print(f"Profile:  {chosen} ({PROFILE_NOTES[chosen]})")
    print(f"Dataset:  {dataset.describe()}")
    print(f"Outputs:  {course.workdir}")
    print(f"Seed {seed}; SwanLab tracking {course.tracking_mode}")
    return course


def headline(text: str) -> None:
    """Print the notebook's headline figure (what `make demo` reports for it)."""
    print(f"{HEADLINE}{text}")


# ----------------------------------------------------------------------------- small lessons

def recipe_table(recipes: Mapping[str, Recipe], differences_only: bool = True) -> pd.DataFrame:
    """Return recipes side by side (one column each); by default only the settings that differ."""
    flat = {}
    for name, recipe in recipes.items():
        values = recipe.to_dict()
        feature = values.pop("feature")
        flat[name] = {**values, **{f"feature.{k}": v for k, v in feature.items()}}
    table = pd.DataFrame(flat).drop(index="name")
    if differences_only and len(recipes) > 1:
        table = table[[len({repr(v) for v in row}) > 1 for row in table.itertuples(index=False)]]
    return table.rename_axis("setting")


def describe_scaling(written: Recipe, used: Recipe) -> str:
    """Return one line saying how the recipe in use differs from the recipe as written."""
    if replace(used, name=written.name) == written:
        return f"{used.name}: the recipe exactly as written."
    keys = ["model", "image_size", "epochs", "segment_seconds", "warmup_epochs", "step_size",
            "batch_size", "clips_per_class"]
    changes = [f"{key} {getattr(written, key)} -> {getattr(used, key)}" for key in keys
               if getattr(written, key) != getattr(used, key)]
    return f"{used.name}: scaled down from the recipe as written ({'; '.join(changes)})."


def describe_overfitting(history: pd.DataFrame) -> str:
    """Return what the curves say: the train-validation gap and where validation loss bottomed out."""
    last = history.iloc[-1]
    best = history.loc[history["val_loss"].idxmin()]
    gap = last["train_acc"] - last["val_acc"]
    text = (f"Last epoch: training accuracy {last['train_acc']:.2f}, validation {last['val_acc']:.2f} "
            f"(gap {gap:+.2f}). Validation loss was lowest at epoch {int(best['epoch'])} "
            f"({best['val_loss']:.3f}) and ended at {last['val_loss']:.3f}.")
    if last["val_loss"] > best["val_loss"] * 1.05 and int(best["epoch"]) < int(last["epoch"]):
        text += " After that the model fitted the training clips better and the others worse: overfitting."
    elif gap >= 0.1:
        text += (" Training accuracy runs ahead of validation: the model already fits its training"
                 " clips better than new ones, the first sign of overfitting.")
    return text


def compare_runs(runs: Sequence[Run]) -> pd.DataFrame:
    """Return one row per run: recipe, model, size, time, best validation accuracy, test scores."""
    from .models import count_parameters, create_model

    rows = []
    for run in runs:
        classes = run.metrics["classes"]
        model = create_model(run.recipe.model, len(classes), pretrained="no")
        rows.append({
            "recipe": run.recipe.name,
            "model": run.recipe.model,
            "parameters (M)": round(count_parameters(model) / 1e6, 1),
            "image (px)": run.recipe.image_size,
            "epochs": run.recipe.epochs,
            "train time (min)": round(run.history["seconds"].sum() / 60, 1),
            "best val acc (seed's number)": round(float(run.history["val_acc"].max()), 3),
            "test acc": round(run.test_accuracy, 3),
            "test macro-F1": round(float(run.metrics["test"]["macro_f1"]), 3),
        })
    return pd.DataFrame(rows).set_index("recipe")


def genre_log_mels(manifest: pd.DataFrame, config: FeatureConfig, seconds: float = 5.0
                   ) -> list[tuple[str, torch.Tensor, FeatureConfig]]:
    """Return (label, log-Mel of the first `seconds` of its first clip, config) for every class."""
    from .audio import load_audio
    from .features import LogMel

    to_log_mel = LogMel(config)
    first = manifest.sort_values(["label", "path"]).groupby("label").head(1)
    return [(label, to_log_mel(load_audio(path, config.sample_rate)[: int(seconds *
                                                                         config.sample_rate)]), config)
            for label, path in zip(first["label"], first["path"], strict=True)]


def describe_comparison(runs: Sequence[Run]) -> str:
    """Return what a comparison says: can the seed's number rank the runs, and each step's change."""
    best_val = [float(run.history["val_acc"].max()) for run in runs]
    val_clip = 1 / runs[0].metrics["val"]["num_clips"]
    lines = [f"Best validation accuracy (the seed's number): {', '.join(f'{v:.3f}' for v in best_val)}."]
    if max(best_val) - min(best_val) <= val_clip + 1e-9:
        lines[0] += f" All within one validation clip ({val_clip:.3f}): it cannot rank these runs."
    for before, after in zip(runs, runs[1:], strict=False):
        clip = 1 / after.metrics["test"]["num_clips"]
        change = after.test_accuracy - before.test_accuracy
        line = (f"{after.name} vs {before.name}: test accuracy {after.test_accuracy:.3f} vs "
                f"{before.test_accuracy:.3f} ({change:+.3f}; one test clip is {clip:.3f})")
        train_after, train_before = (float(r.history["train_acc"].iloc[-1]) for r in (after, before))
        if abs(change) < 2 * clip:
            line += ": within two clips, no measurable difference."
        elif change < 0 and train_after < train_before - 0.1:
            line += (f": {after.name} ends training at {train_after:.2f} training accuracy against "
                     f"{train_before:.2f}, so it underfits: in {after.recipe.epochs} epochs its "
                     "regularization (augmentation, learning-rate steps) costs more than it gives.")
        else:
            line += "."
        lines.append(line)
    return "\n".join(lines)


def summary_features(log_mels: Sequence[torch.Tensor]) -> np.ndarray:
    """Return each clip's mean and standard deviation per Mel band over time: (clips, 2 * n_mels)."""
    return np.stack([torch.cat([m.float().mean(dim=1), m.float().std(dim=1)]).numpy()
                     for m in log_mels])


def nearest_neighbour_accuracy(features: np.ndarray, labels: Sequence[str], split: Sequence[str]
                               ) -> float:
    """Fit a 1-nearest-neighbour classifier on the train rows and return its test accuracy."""
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    split, labels = np.asarray(split), np.asarray(labels)
    train, test = split == "train", split == "test"
    scaler = StandardScaler().fit(features[train])
    classifier = KNeighborsClassifier(n_neighbors=1).fit(scaler.transform(features[train]),
                                                          labels[train])
    return float((classifier.predict(scaler.transform(features[test])) == labels[test]).mean())


def leakage_experiment(manifest: pd.DataFrame, config: FeatureConfig | None = None, seed: int = 42
                       ) -> pd.DataFrame:
    """Score a 1-NN classifier on a random split and on a split by artist: leakage inflates the first."""
    from .features import extract_log_mels

    features = summary_features(extract_log_mels(manifest["path"].tolist(), config or
                                                 FeatureConfig(), progress=False))
    rows = []
    for method in ("random", "group"):
        split = make_splits(manifest, method, seed=seed)
        train_groups = set(split.loc[split["split"] == "train", "group"])
        test = split[split["split"] == "test"]
        rows.append({
            "split": method,
            "test clips": len(test),
            "test clips whose artist is in train": int(test["group"].isin(train_groups).sum()),
            "1-NN test accuracy": round(nearest_neighbour_accuracy(
                features, split["label"].tolist(), split["split"].tolist()), 3),
        })
    return pd.DataFrame(rows).set_index("split")


def write_broken_examples(folder: str | Path, good_clip: str | Path) -> Path:
    """Write a tiny two-class dataset with a corrupt jazz.00054.wav and a truncated clip; return it."""
    folder = Path(folder)
    audio = Path(good_clip).read_bytes()
    for name in ("blues/blues.00000.wav", "blues/blues.00001.wav", "jazz/jazz.00053.wav"):
        write_bytes(folder / name, audio)
    rng = np.random.default_rng(54)
    write_bytes(folder / "jazz" / "jazz.00054.wav", b"RIFF" + rng.bytes(4096))  # not a real WAV
    write_bytes(folder / "jazz" / "jazz.00055.wav", audio[:30])  # cut inside the header
    return folder


# ----------------------------------------------------------------------------- widgets and audio

def widgets_enabled() -> bool:
    """Return True when ipywidgets can render: $AUDIOCLS_WIDGETS, else inside a Jupyter kernel."""
    setting = os.environ.get(WIDGETS_ENV, "").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return False
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    if setting in ("1", "true", "yes", "on"):
        return True
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def explore(draw: Callable[..., Any], sliders: Mapping[str, Sequence[Any]],
            defaults: Mapping[str, Any] | None = None, interactive: bool | None = None) -> None:
    """Call `draw(**values)` from ipywidgets sliders, or draw once with the defaults (static)."""
    chosen = {name: (defaults or {}).get(name, values[0]) for name, values in sliders.items()}
    if interactive is None:
        interactive = widgets_enabled()
    if interactive:
        import ipywidgets
        from IPython.display import display

        display(ipywidgets.interactive(draw, **{name: ipywidgets.SelectionSlider(
            options=list(values), value=chosen[name], description=name, continuous_update=False)
            for name, values in sliders.items()}))
        return
    print("Static figure (no widget front end; open the notebook in JupyterLab for sliders): "
          + ", ".join(f"{name}={value}" for name, value in chosen.items()))
    draw(**chosen)


def show_clip(waveform: torch.Tensor | np.ndarray, sample_rate: int, title: str,
              max_seconds: float | None = 10.0) -> None:
    """Plot a waveform and put an audio player for it right below (at most `max_seconds`)."""
    from IPython.display import Audio, display

    from .plots import plot_waveform

    samples = np.asarray(waveform, dtype=np.float32).reshape(-1)
    if max_seconds is not None:
        samples = samples[: int(max_seconds * sample_rate)]
    figure = plot_waveform(samples, sample_rate, title=title)
    figure.set_size_inches(8, 1.8)
    figure.tight_layout()
    plt.show()
    display(Audio(samples, rate=sample_rate, normalize=bool(np.abs(samples).max() > 0)))


# ----------------------------------------------------------------------------- make demo

@dataclass
class NotebookResult:
    """One executed notebook: where it went, how long it took, and its headline."""

    name: str
    seconds: float
    headline: str
    html: Path


def notebook_headline(notebook: Any) -> str:
    """Return the last `Headline: ...` line a notebook printed, or '' if none."""
    found = ""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                for line in output.get("text", "").splitlines():
                    if line.startswith(HEADLINE):
                        found = line.removeprefix(HEADLINE)
    return found


def run_notebook(path: Path, out_dir: Path, timeout: int = 3600) -> NotebookResult:
    """Execute one notebook in its folder; write the executed copy and its HTML to `out_dir`."""
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])  # no TCP notice
    try:
        client.execute()
    finally:  # a failing notebook still leaves its executed copy, to see where it failed
        out_dir.mkdir(parents=True, exist_ok=True)
        write_bytes(out_dir / path.name, nbformat.writes(notebook).encode())
    seconds = time.perf_counter() - started
    html, _ = HTMLExporter().from_notebook_node(notebook)
    html_path = out_dir / f"{path.stem}.html"
    write_bytes(html_path, html.encode())
    return NotebookResult(path.stem, seconds, notebook_headline(notebook), html_path)


def run_notebooks(paths: Sequence[Path], out_dir: Path, profile: str = "cpu",
                  timeout: int = 3600) -> list[NotebookResult]:
    """Execute notebooks in order in `profile` (static figures), printing each one's headline."""
    os.environ[PROFILE_ENV] = profile
    os.environ[WIDGETS_ENV] = "0"
    if not os.environ.get(DATA_ENV):
        os.environ[DATA_ENV] = "synthetic"
        print(f"Using the built-in dataset (set {DATA_ENV}=data/GTZAN to run on GTZAN)")
    print(f"Executing {len(paths)} notebooks in the {profile} profile; outputs in "
          f"{os.environ.get(WORKDIR_ENV) or workdir()}", flush=True)
    results = []
    for path in paths:
        print(f"==> {path.name} ...", flush=True)
        result = run_notebook(path, out_dir, timeout)
        print(f"    {result.seconds:.0f} s  {result.headline or '(no headline)'}", flush=True)
        results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Execute the course's notebooks (make demo) and print a summary."""
    parser = argparse.ArgumentParser(description="Execute the course notebooks into HTML.")
    parser.add_argument("--out", type=Path, default=Path("outputs/notebooks"))
    parser.add_argument("--profile", default="cpu", choices=list(PROFILES))
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to run (default: the four chapters, in order)")
    args = parser.parse_args(argv)
    paths = args.notebooks or [course_root() / "notebooks" / f"{n}.ipynb" for n in NOTEBOOKS]
    started = time.perf_counter()
    try:
        results = run_notebooks(paths, args.out, args.profile, args.timeout)
    except Exception as error:  # noqa: BLE001 - one line naming the notebook, not a kernel dump
        last_line = re.sub(r"\x1b\[[0-9;]*m", "", str(error).strip().splitlines()[-1])  # no colours
        print(f"make demo: a notebook failed: {last_line[:300]}\n"
              f"See the executed copy in {args.out}/ for the cell.", file=sys.stderr)
        return 1
    print("\nnotebook                          time  headline")
    for result in results:
        print(f"{result.name:<32} {result.seconds:>5.0f} s  {result.headline}")
    print(f"Total {time.perf_counter() - started:.0f} s. Executed notebooks and HTML in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
