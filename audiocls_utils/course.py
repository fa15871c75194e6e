"""The notebooks' session: profile, device, dataset, working folder, feature cache and saved runs.

Every notebook starts with `course = setup_notebook(...)`. What it reads (all optional):

- AUDIOCLS_DEVICE: cpu | cuda | cuda:N | mps (default: CUDA, then Apple's MPS, then the CPU)
- AUDIOCLS_PROFILE: smoke | cpu | gpu16 | full (default: the one that fits the machine's GPU
  memory, `devices.machine_profile`; cpu without a CUDA GPU)
- AUDIOCLS_DATA: a dataset folder (GTZAN's `genres/` and Kaggle's `Data/genres_original/` are
  found inside it), or `synthetic` for the built-in set. Default: `data/gtzan` (any letter case)
  in the course folder when it exists, else the built-in synthetic set.
- AUDIOCLS_WORKDIR: where notebooks write (default: `outputs/course` in the course folder):
  `data/synthetic-<profile>/` (the built-in set), `manifest.csv` (+ `manifest.json`, what it was
  built from), `runs/<recipe>-<profile>/` (one training run each), `runs/swanlog/` (SwanLab).
- AUDIOCLS_WIDGETS: 0 draws static figures where a notebook would show ipywidgets sliders.

This is plumbing a learner need not read: the chapters write the classifier's code themselves.
`make demo` (`python scripts/run_notebooks.py`) executes the notebooks. Nothing in the package
imports this module: it is the top layer, above the core and the engine.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from .config import PROFILES, FeatureConfig, Recipe, apply_profile, get_recipe
from .data import (
    build_manifest,
    course_root,
    find_data_root,
    limit_per_class,
    load_manifest,
    make_splits,
    save_manifest,
)
from .devices import check_device, machine_profile, pick_device
from .engine.experiment.cache import FeatureCache
from .engine.experiment.run_folder import RUN_FILE, Plan, finish_run, plan_run, run_record
from .engine.experiment.runner import run_experiment
from .engine.experiment.tracking import quiet_swanlab, resolve_mode, swanlab_line  # noqa: F401 (chapters)
from .engine.synth import generate_dataset
from .errors import AudioclsError
from .files import save_torch, write_csv, write_json
from .gtzan import GENRES, find_gtzan  # GENRES: GTZAN's ten genres, which the built-in set copies
from .metrics import misclassified  # noqa: F401 - chapter 03 writes it; chapters import it here
from .plots import swanlab_test_media  # noqa: F401 - chapter 03 writes it; chapters import it here
from .predict import model_bundle
from .train import seed_everything

PROFILE_ENV, DATA_ENV, WORKDIR_ENV, WIDGETS_ENV, DEVICE_ENV = (
    "AUDIOCLS_PROFILE", "AUDIOCLS_DATA", "AUDIOCLS_WORKDIR", "AUDIOCLS_WIDGETS", "AUDIOCLS_DEVICE")
SYNTHETIC = ("synthetic", "builtin", "built-in")  # AUDIOCLS_DATA values that ask for the built-in set

# Size of the built-in set per profile: (clips per genre, seconds per clip). `full` is GTZAN's size.
SYNTH_SIZES = {"smoke": (8, 2.0), "cpu": (30, 6.0), "gpu16": (100, 30.0), "full": (100, 30.0)}
PROFILE_NOTES = {
    "smoke": "seconds per notebook, for tests: tiny data, 2 epochs, numbers mean nothing",
    "cpu": "laptop-sized: minutes per notebook on 2 cores",
    "gpu16": "the recipes as written, in smaller batches: a 16 GB GPU",
    "full": "the recipes as written: needs a large GPU",
}
HEADLINE = "Headline: "  # the line `make demo` picks out of each executed notebook


# ----------------------------------------------------------------------------- where things are

def workdir() -> Path:
    """Return (and create) the folder notebooks write to: $AUDIOCLS_WORKDIR or outputs/course."""
    folder = Path(os.environ.get(WORKDIR_ENV) or course_root() / "outputs" / "course").expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    return folder.resolve()


def resolve_profile(profile: str | None, device: torch.device | str,
                    built_in_set: bool = False) -> tuple[str, str]:
    """Return the profile and why: the argument, else $AUDIOCLS_PROFILE, else what fits the device.

    On a GPU with only the built-in set (`built_in_set`: no GTZAN, as on a fresh Colab), the
    device's profile would generate a GTZAN-sized set first (minutes) to train the recipes as
    written: `cpu` is chosen instead, and the reason says how to ask for more.
    """
    if profile or os.environ.get(PROFILE_ENV):
        chosen, why = ((profile, "set in the parameters cell") if profile
                       else (os.environ[PROFILE_ENV], f"set by {PROFILE_ENV}"))
        chosen = chosen.lower()
    else:
        chosen, why = machine_profile(device)
        if built_in_set and chosen in ("gpu16", "full"):
            chosen, why = "cpu", (f"{why}, but no GTZAN here: the built-in set in the cpu profile's "
                                  f"size; set {PROFILE_ENV}={chosen} to generate a GTZAN-sized set "
                                  "and train the recipes as written")
    if chosen not in PROFILES:
        raise AudioclsError(f"Unknown profile {chosen!r} (from {PROFILE_ENV} or the parameters "
                            f"cell); choose one of {list(PROFILES)}")
    return chosen, why


def tracking_mode(profile: str) -> str:
    """Return the SwanLab mode: disabled for smoke, else $SWANLAB_MODE, else offline (no account)."""
    return "disabled" if profile == "smoke" else resolve_mode(None)


# ----------------------------------------------------------------------------- which dataset

@dataclass(frozen=True)
class DatasetInfo:
    """The dataset a notebook uses: its folder of class folders and what it is."""

    root: Path
    name: str
    synthetic: bool

    def describe(self) -> str:
        """Return a line naming the dataset and its folder (and a warning line if synthetic)."""
        note = ("\n          synthetic music, NOT GTZAN: accuracies on it say nothing about GTZAN "
                "(chapter 01, section 1: how to get GTZAN)")
        return f"{self.name} at {self.root}{note if self.synthetic else ''}"


def synthetic_dataset(profile: str, folder: Path | None = None, progress: bool = True
                      ) -> DatasetInfo:
    """Generate (or reuse) the built-in set sized for `profile` under `folder` (default: workdir/data)."""
    clips, seconds = SYNTH_SIZES[profile]
    out = (folder or workdir() / "data") / f"synthetic-{profile}"
    # The course owns this folder: a set from an older generator is replaced, not refused.
    root = generate_dataset(out, clips_per_class=clips, seconds=seconds, progress=progress,
                            replace=True)
    return DatasetInfo(root, f"built-in synthetic set, {clips} clips x {seconds:g} s per genre",
                       synthetic=True)


def find_dataset(data: str | None, profile: str, progress: bool = True) -> DatasetInfo:
    """Return the dataset: `data` or $AUDIOCLS_DATA, else data/gtzan if present, else the built-in set.

    A relative path is read from the working folder, else from the course folder.
    """
    chosen = data or os.environ.get(DATA_ENV)
    if chosen and chosen.lower() in SYNTHETIC:
        return synthetic_dataset(profile, progress=progress)
    if not chosen:
        gtzan = find_gtzan(course_root())  # data/gtzan, where `audiocls download gtzan` puts it
        if gtzan is None:
            return synthetic_dataset(profile, progress=progress)
        chosen = str(gtzan)
    path = Path(chosen).expanduser()
    if not path.is_absolute() and not path.exists():  # relative to the course folder, e.g. data/gtzan
        path = course_root() / path
    if path.is_file() and path.suffix.lower() == ".csv":  # a labels CSV (chapter 06): its folder
        path = path.parent
    root = find_data_root(path).resolve()
    folders = {p.name for p in root.iterdir() if p.is_dir()}
    is_synthetic = (root / ".synth.json").is_file()
    if is_synthetic:
        name = "synthetic set"
    elif set(GENRES) <= folders:
        name = "GTZAN"
    elif root.name == "recordings" and root.parent.name == "fsdd":
        name = "the Free Spoken Digit Dataset"
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
        """Return SwanLab's folder: `swanlab sync` uploads its run-* folders (local mode: make dashboard)."""
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

    def log_mels(self, manifest: pd.DataFrame, config: FeatureConfig) -> list:
        """Return one log-Mel per manifest row, from the feature cache: each is computed once."""
        return FeatureCache().log_mels(manifest["path"].tolist(), config, progress=False)

    def save_run(self, recipe: Recipe, model: torch.nn.Module, class_names: Sequence[str],
                 num_frames: int, history: pd.DataFrame, metrics: dict[str, Any],
                 manifest: pd.DataFrame | None = None,
                 reject_threshold: float | None = None) -> Run:
        """Write a run trained in a notebook as `audiocls train` would: model.pt (with the
        threshold below which `audiocls predict` answers unknown, if given), metrics, history."""
        folder = self.run_dir(recipe)
        (folder / RUN_FILE).unlink(missing_ok=True)  # written last: it vouches for the files below
        save_torch(model_bundle(model, recipe, class_names, num_frames, reject_threshold),
                   folder / "model.pt")
        write_json(folder / "metrics.json", {"classes": list(class_names), "recipe": recipe.name,
                                             "seed": self.seed, **metrics})
        write_csv(history, folder / "history.csv")
        write_json(folder / "recipe.json", recipe.to_dict())
        if manifest is not None:  # what `reuse_or_train` compares: the clips and their content
            used = limit_per_class(manifest, recipe.clips_per_class, seed=self.seed)
            save_manifest(used, folder / "manifest.csv")
            finish_run(folder, run_record(recipe, self.seed, None, used))
        return read_run(folder)

    def recipe(self, name: str) -> Recipe:
        """Return the named recipe scaled to this notebook's profile."""
        return apply_profile(get_recipe(name), self.profile)

    def run_dir(self, recipe: Recipe) -> Path:
        """Return the folder of a recipe's run, e.g. runs/baseline-cpu."""
        return self.workdir / "runs" / recipe.name.replace("@", "-")

    def train(self, recipe: Recipe, manifest: pd.DataFrame | None = None) -> Run:
        """Train `recipe` on the course manifest and return the finished run."""
        manifest = self.manifest() if manifest is None else manifest
        folder = self.run_dir(recipe)  # the engine prints where its SwanLab run is logged
        run_experiment(manifest, recipe, folder, device=self.device, seed=self.seed,
                       tracking_mode=self.tracking_mode, progress=False, overwrite=True)
        return read_run(folder)

    def finished_run(self, recipe: Recipe, manifest: pd.DataFrame | None = None) -> Run | None:
        """Return the run of `recipe` an earlier notebook left, if it used this data and seed."""
        manifest = self.manifest() if manifest is None else manifest
        folder, used = self.run_dir(recipe), limit_per_class(manifest, recipe.clips_per_class,
                                                             seed=self.seed)
        try:  # `audiocls train`'s own rule: the same recipe, seed, clips and content, finished
            plan = plan_run(folder, run_record(recipe, self.seed, None, used), used, resume=False,
                            overwrite=False)
        except AudioclsError:  # another run, or this one unfinished: train it here
            return None
        return read_run(folder) if plan is Plan.FINISHED else None

    def reuse_or_train(self, recipe: Recipe, manifest: pd.DataFrame | None = None) -> Run:
        """Return the run of `recipe` left by an earlier notebook if it used this data, else train it."""
        manifest = self.manifest() if manifest is None else manifest
        run = self.finished_run(recipe, manifest)
        if run is not None:
            print(f"Reusing the finished run in {run.output_dir} (same recipe, split and seed)")
            return run
        print(f"No matching run in {self.run_dir(recipe)}: training {recipe.name} now")
        return self.train(recipe, manifest)

    def swanlab_line(self, name: str) -> str:
        """Return the one line a notebook prints for a SwanLab run: where it goes, how to view it."""
        why = "the smoke profile" if self.profile == "smoke" else "SWANLAB_MODE=disabled"
        return swanlab_line(name, self.tracking_mode, self.swanlog_dir, f"tracking is off in {why}")


def _use_inline_figures() -> None:
    """Show figures inline when running in a Jupyter kernel, whatever MPLBACKEND says."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and getattr(shell, "kernel", None) is not None:
        shell.run_line_magic("matplotlib", "inline")


def resolve_device(device: str | None) -> tuple[torch.device, str]:
    """Return the device and why: the argument, else $AUDIOCLS_DEVICE, else the best available."""
    if device:
        return check_device(device, "DEVICE"), "set in the parameters cell"
    if os.environ.get(DEVICE_ENV):
        return check_device(os.environ[DEVICE_ENV], DEVICE_ENV), f"set by {DEVICE_ENV}"
    return pick_device(), "the best this machine has: CUDA, then Apple's MPS, then the CPU"


def setup_notebook(profile: str | None = None, data: str | None = None, seed: int = 42,
                   device: str | None = None, progress: bool | None = None) -> Course:
    """Pick device and profile, seed everything, find the dataset, and print what is used.

    Progress bars (generating the built-in set) show only where widgets render (see widgets_enabled).
    """
    import torchaudio

    from . import __version__

    _use_inline_figures()
    plt.rcParams.update({"figure.dpi": 100, "axes.titlesize": 11})
    device, device_why = resolve_device(device)
    named = data or os.environ.get(DATA_ENV)
    built_in_set = (named.lower() in SYNTHETIC) if named else find_gtzan(course_root()) is None
    chosen, why = resolve_profile(profile, device, built_in_set)
    seed_everything(seed)
    dataset = find_dataset(data, chosen, progress=widgets_enabled() if progress is None else progress)
    course = Course(chosen, device, seed, dataset, workdir(), tracking_mode(chosen))
    print(f"audiocls_utils {__version__} | torch {torch.__version__} | torchaudio "
          f"{torchaudio.__version__} | Python {platform.python_version()}")
    count = torch.get_num_threads()
    threads = f", {count} thread{'s' if count > 1 else ''}" if device.type == "cpu" else ""
    print(f"Device:   {device}{threads} ({device_why})")
    print(f"Profile:  {chosen}, {PROFILE_NOTES[chosen]} ({why})")
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
            "train time (min)": (round(run.history["seconds"].sum() / 60, 1)
                                 if "seconds" in run.history else None),
            "best epoch": run.metrics.get("best_epoch"),
            "best val acc": round(float(run.history["val_acc"].max()), 3),
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


# ----------------------------------------------------------------------------- chapter 06

# Where chapter 06 looks for the spoken digits, in order: where `audiocls download fsdd` puts
# them, then the copy this course's test machines keep beside the repository.
FSDD_FOLDERS = (Path("data") / "fsdd" / "recordings",
                Path("..") / "shared" / "data" / "fsdd" / "recordings")


def fsdd_folder() -> Path | None:
    """Return the Free Spoken Digit Dataset's recordings folder if it is here, else None."""
    for folder in FSDD_FOLDERS:
        if (course_root() / folder).is_dir():
            return (course_root() / folder).resolve()
    return None


def own_sounds(data: str | None, label_pattern: str | None = None) -> tuple[str, str | None]:
    """Return chapter 06's dataset and label pattern: `data` as given (a folder of class folders,
    a flat folder whose file names `label_pattern` reads, or a CSV of paths and labels), else the
    Free Spoken Digit Dataset if it is here (pattern "fsdd"), else "synthetic" (the built-in set).
    """
    if data:
        return data, label_pattern
    spoken = fsdd_folder()
    if spoken is not None:
        return str(spoken), label_pattern or "fsdd"
    print("The spoken digits are not here (get them with `audiocls download fsdd`, then run "
          "this chapter again); using the built-in synthetic set instead")
    return "synthetic", label_pattern
