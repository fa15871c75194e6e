"""Predict: clip-level probabilities (windows averaged), and labels for new files with a saved model.

`predict_clips` is written in chapter 03; `Predictor` loads what `audiocls train` saved and is
what `audiocls predict` runs. Nothing here imports training code.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from .abstain import SILENCE_DB, decide
from .audio import AudioStream
from .config import Recipe
from .data import SegmentDataset, content_problem, decode_problem
from .devices import pick_device
from .errors import AudioclsError
from .features import FileScan, scan_file, stream_windows, too_short_to_frame
from .files import load_torch
from .models import create_model, weights_file

MODEL_FORMAT = "audiocls-model/2"  # /2: the model takes log-Mels (standardization inside it)
REQUIRED_KEYS = {"format", "model_name", "state_dict", "class_names", "recipe", "num_frames",
                 "mean", "std"}
HEAD = "1.fc.weight"  # the new head's weights, (classes, features), in the model's state_dict
KEEP_SECONDS = 600  # a file up to this long is decoded once: its log-Mel (13 MB) is kept
REDO = "re-export it from its run folder or retrain it (`audiocls train`)"


@torch.no_grad()
def predict_clips(model, loader, device, amp=False):  #@save
    """Return each clip's class probabilities, (clips, classes): the mean softmax of its windows."""
    model.eval()
    num_clips = len(loader.dataset.log_mels)
    sums, counts = None, torch.zeros(num_clips)
    for segments, _, clips in loader:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(segments.to(device))  # (batch, classes)
        probabilities = logits.float().softmax(dim=1).cpu()
        if sums is None:
            sums = torch.zeros(num_clips, probabilities.shape[1])
        sums.index_add_(0, clips, probabilities)  # add each window's vote to its clip's row
        counts.index_add_(0, clips, torch.ones(len(clips)))
    assert (counts > 0).all(), "every clip needs at least one window"
    return sums / counts.unsqueeze(1)


def model_file(path: str | Path) -> Path:
    """Return `path`, or the model.pt inside it when it is a run folder; raise for a folder without."""
    path = Path(path)
    if not path.is_dir():
        return path
    if (path / "model.pt").is_file():
        return path / "model.pt"
    raise AudioclsError(f"{path} is a folder with no model.pt: name a model file written by "
                        "`audiocls train` (a finished run folder holds one)")


def load_bundle(path: str | Path) -> dict[str, Any]:
    """Load a model file safely (tensors and plain types only) and check what it holds."""
    path = model_file(path)
    if not path.is_file():
        raise AudioclsError(f"Model file {path} not found; train one with `audiocls train`")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error says it
            warnings.simplefilter("ignore")
            bundle = load_torch(path)
    except Exception as error:  # any damage: the unpickler raises KeyError, IndexError, ...
        raise AudioclsError(
            f"{path}: not a readable audiocls model ({_loader_reason(error)}). Only files "
            "written by `audiocls train` load; nothing from the file was executed."
        ) from None
    if isinstance(bundle, dict) and bundle.get("format") == "audiocls-model/1":
        raise AudioclsError(f"{path}: a model file of an older audiocls (format 1); train it "
                            "again with this version")
    if not isinstance(bundle, dict) or bundle.get("format") != MODEL_FORMAT:
        raise AudioclsError(f"{path}: not an audiocls model file (expected format {MODEL_FORMAT})")
    missing = REQUIRED_KEYS - set(bundle)
    if missing:
        raise AudioclsError(f"{path}: model file lacks {sorted(missing)}; {REDO}")
    return bundle


def _loader_reason(error: Exception) -> str:
    """Return why torch.load refused a file, in a few words, without its advice to unpickle it.

    PyTorch suggests `weights_only=False`, which would run whatever the file holds: the
    refusal keeps only what was found ("Unsupported global: GLOBAL os.system").
    """
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    found = [line for line in lines if "GLOBAL" in line or line.startswith("Unsupported")]
    if found:
        reason = found[0].removeprefix("Trying to load ").split(" was not an allowed global")[0]
        return reason.rstrip(".")[:200]
    if lines and "weights_only" in lines[0]:  # "Weights only load failed." and its advice
        return "it holds Python objects other than tensors and plain types"
    return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__


def check_bundle(bundle: dict[str, Any], source: str | Path) -> Recipe:
    """Check that a model file's parts fit together; return its recipe, or raise one line."""

    def refuse(what: str) -> AudioclsError:
        return AudioclsError(f"{source}: {what}; the model file is damaged or was edited: {REDO}")

    if not isinstance(bundle["recipe"], dict):
        raise refuse("its recipe is not a table of settings")
    try:
        recipe = Recipe.from_dict(bundle["recipe"])
    except (AudioclsError, TypeError, ValueError, AttributeError) as error:
        raise refuse(f"its recipe cannot be read ({error})") from None
    names = bundle["class_names"]
    if (not isinstance(names, list) or not names or len(set(names)) != len(names)
            or not all(isinstance(name, str) for name in names)):
        raise refuse("its class list is not a list of distinct names")
    model_name = bundle["model_name"]
    try:
        weights_file(str(model_name))  # names the model torchvision must know
    except AudioclsError:
        raise refuse(f"unknown model {model_name!r}") from None
    state = bundle["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise refuse("its weights are not a table of tensors")
    head = state.get(HEAD)
    if head is None or head.ndim != 2 or head.shape[0] != len(names):
        outputs = "no" if head is None else head.shape[0]
        raise refuse(f"its head has {outputs} outputs for {len(names)} classes")
    _check_numbers(bundle, state, recipe, refuse)
    return recipe


def _check_numbers(bundle: dict[str, Any], state: dict[str, torch.Tensor], recipe: Recipe,
                   refuse: Any) -> None:
    """Raise when the frame count, statistics or feature settings cannot be what training wrote."""
    feature = recipe.feature
    if not all(isinstance(v, int) and v > 0 for v in (feature.sample_rate, feature.n_fft,
                                                      feature.hop_length, feature.n_mels,
                                                      recipe.image_size, recipe.batch_size)):
        raise refuse("its feature settings, image size or batch size are not positive whole numbers")
    reals = (recipe.segment_seconds, recipe.eval_hop_fraction, feature.f_min)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               for v in reals) or not 0 < recipe.eval_hop_fraction <= 1:
        raise refuse("its segment length, window hop (a fraction in (0, 1]) or f_min is not a "
                     "number it could have been trained with")
    top = feature.f_max if feature.f_max is not None else feature.sample_rate / 2
    if not (isinstance(top, (int, float)) and 0 <= feature.f_min < top):
        raise refuse(f"its Mel band, f_min {feature.f_min} to f_max {top} Hz, is no band of "
                     "frequencies from 0 Hz up")
    most = feature.seconds_to_frames(recipe.segment_seconds)
    num_frames = bundle["num_frames"]
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or not 1 <= num_frames <= most:
        raise refuse(f"num_frames {num_frames!r} is not between 1 and {most} (the recipe's "
                     f"{recipe.segment_seconds:g} s segments)")
    for name, value in (("mean", bundle["mean"]), ("std", bundle["std"]),
                        ("mean in its weights", state.get("0.mean")),
                        ("std in its weights", state.get("0.std"))):
        single = isinstance(value, (int, float)) or (isinstance(value, torch.Tensor)
                                                     and value.numel() == 1)
        number = float(value) if single else math.nan
        if not math.isfinite(number) or (name.startswith("std") and number <= 0):
            shown = number if single else type(value).__name__
            raise refuse(f"its feature {name} ({shown}) is not a finite number"
                         + (" above 0" if name.startswith("std") else ""))


def model_bundle(model: torch.nn.Module, recipe: Recipe, class_names: Sequence[str],
                 num_frames: int, reject_threshold: float | None = None) -> dict[str, Any]:
    """Return everything `Predictor` needs, as tensors and plain Python types (weights_only-safe).

    `reject_threshold` (`abstain.calibrate_threshold` on the validation set) is the top
    probability below which `Predictor` answers "unknown"; None: it never abstains on confidence.
    """
    image = model[0]  # LogMelToImage: the training set's statistics travel inside the model
    return {
        "format": MODEL_FORMAT,
        "model_name": recipe.model,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "class_names": list(class_names),
        "feature_config": recipe.feature.to_dict(),
        "recipe": recipe.to_dict(),
        "num_frames": int(num_frames),
        "mean": float(image.mean),
        "std": float(image.std),
        "reject_threshold": None if reject_threshold is None else float(reject_threshold),
    }


def check_threshold(threshold: Any, what: str) -> float | None:
    """Return `threshold` as a float if it is None or a probability in [0, 1], else raise one line."""
    if threshold is None:
        return None
    if (isinstance(threshold, bool) or not isinstance(threshold, (int, float, torch.Tensor))
            or not 0 <= float(threshold) <= 1):
        raise AudioclsError(f"{what} must be a probability between 0 and 1 (or none), not "
                            f"{threshold!r}")
    return float(threshold)


def check_top_k(top_k: int) -> None:
    """Raise unless `top_k` (how many labels to show per file) is a whole number of at least 1."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise AudioclsError(f"--top-k must be a whole number of at least 1, not {top_k!r}; "
                            "e.g. --top-k 3 (a number above the class count shows every class)")


class Predictor:
    """Hold a trained model with its features and class list, ready to label files."""

    def __init__(self, bundle: dict[str, Any], device: str | torch.device | None = None,
                 source: str | Path = "model file", reject: bool = True,
                 threshold: float | None = None, silence_db: float | None = SILENCE_DB) -> None:
        """`reject` False labels every clip; else a clip quieter than `silence_db` (dBFS) or whose
        top probability is below `threshold` (default: the one saved with the model, if any) is
        labelled "unknown" (`abstain.decide`)."""
        self.source = str(source)
        self.recipe = check_bundle(bundle, self.source)
        saved = check_threshold(bundle.get("reject_threshold"), f"{self.source}: its reject_threshold")
        self.reject = bool(reject)
        self.threshold = check_threshold(threshold, "threshold") if threshold is not None else saved
        self.silence_db = silence_db
        self.device = pick_device(str(device) if device else None)
        self.class_names: list[str] = list(bundle["class_names"])
        self.num_frames = int(bundle["num_frames"])
        self.model = create_model(bundle["model_name"], len(self.class_names),
                                  self.recipe.image_size, pretrained="no")
        try:
            self.model.load_state_dict(bundle["state_dict"])  # mean and std included
        except RuntimeError as error:
            first = str(error).strip().splitlines()[-1].strip()[:200]
            raise AudioclsError(f"{self.source}: its weights do not fit a {bundle['model_name']} "
                                f"({first}); the model file is damaged or was edited: "
                                f"{REDO}") from None
        self.model.to(self.device).eval()

    @classmethod
    def from_file(cls, path: str | Path, device: str | torch.device | None = None,
                  reject: bool = True, threshold: float | None = None) -> Predictor:
        """Load a model file written by `audiocls train`."""
        return cls(load_bundle(path), device, source=model_file(path), reject=reject,
                   threshold=threshold)

    def decide(self, probabilities: torch.Tensor, loudness: float | None = None) -> dict[str, Any]:
        """Return `abstain.decide`'s answer for one clip's (classes,) probabilities and loudness
        (dBFS), or its top class whatever they are when `reject` is off."""
        if not self.reject:
            return decide(probabilities, self.class_names)
        return decide(probabilities, self.class_names, self.threshold, loudness, self.silence_db)

    def probabilities(self, paths: Sequence[str | Path]) -> torch.Tensor:
        """Return (files, classes) probabilities, averaged over each file's windows.

        Files are decoded block by block (`file_probabilities`); one that cannot be decoded or
        is too short to frame raises.
        """
        rows = []
        for path in paths:
            scan = self.scan(path)
            if not scan.framed:
                raise AudioclsError(f"{path}: {too_short_to_frame(self.recipe.feature)}")
            rows.append(self.file_probabilities(path, scan))
        return torch.stack(rows) if rows else torch.empty(0, len(self.class_names))

    def scan(self, path: str | Path) -> FileScan:
        """Decode a file once: its floor, description, and its log-Mel if at most KEEP_SECONDS long."""
        feature = self.recipe.feature
        return scan_file(path, feature, torch.float32,
                         keep_frames=feature.seconds_to_frames(KEEP_SECONDS))

    @property
    def hop_frames(self) -> int:
        """Return the frames between evaluation windows (the recipe's fraction of a window)."""
        return max(1, int(self.num_frames * self.recipe.eval_hop_fraction))

    def clip_probabilities(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Return one clip's (classes,) probabilities: the mean over the windows of its log-Mel."""
        windows = SegmentDataset([log_mel], [0], self.num_frames, train=False,
                                 hop_frames=self.hop_frames)
        loader = DataLoader(windows, batch_size=self.recipe.batch_size)
        return self._checked(predict_clips(self.model, loader, self.device)[0])

    @torch.no_grad()
    def file_probabilities(self, path: str | Path, scan: FileScan) -> torch.Tensor:
        """Return a file's (classes,) probabilities as `clip_probabilities` gives them.

        A file longer than KEEP_SECONDS is decoded a second time, its windows streamed through
        the model: memory holds a batch of windows whatever the file's length. `scan` is the
        first pass (`scan`), which found the top_db floor every window needs.
        """
        if scan.log_mel is not None:
            return self.clip_probabilities(scan.log_mel)
        feature = self.recipe.feature
        pieces = AudioStream(path, feature.sample_rate)
        windows = stream_windows(pieces, feature, self.num_frames, self.hop_frames, scan.floor,
                                 torch.float32)
        sums, count = torch.zeros(1, len(self.class_names)), 0
        for batch in _batches(windows, self.recipe.batch_size):
            logits = self.model(torch.stack(batch).to(self.device))  # (batch, classes)
            probabilities = logits.float().softmax(dim=1).cpu()
            sums.index_add_(0, torch.zeros(len(batch), dtype=torch.long), probabilities)
            count += len(batch)
        return self._checked(sums[0] / float(count))

    def _checked(self, probabilities: torch.Tensor) -> torch.Tensor:
        """Return `probabilities`, or raise if the model gave NaN or infinite ones."""
        if not torch.isfinite(probabilities).all():
            raise AudioclsError(f"{self.source}: the model gives NaN or infinite probabilities; "
                                f"its weights are damaged: {REDO}")
        return probabilities

    def predict(self, paths: Sequence[str | Path], top_k: int = 3) -> list[dict[str, Any]]:
        """Return, for each file, its `top_k` labels with probabilities, most likely first, and
        its answer ("label": the top class, or "unknown" with a "reason").

        As `each_prediction` gives them, in a list.
        """
        return list(self.each_prediction(paths, top_k))

    def each_prediction(self, paths: Sequence[str | Path], top_k: int = 3
                        ) -> Iterator[dict[str, Any]]:
        """Yield, file by file as each is done, its `top_k` labels with probabilities.

        Each file is decoded block by block and checked on the way as `audiocls prepare` checks
        clips (`data.check_clip`); one longer than KEEP_SECONDS is decoded again to stream its
        windows (`file_probabilities`). One that fails gets {"path", "error": why} instead of
        {"path", "top", "label", "reason", "loudness_db"}, and the rest go on. "label" is the
        top class, or "unknown" when the clip is silent or the model unsure (`decide`);
        "reason" says which ("silence", "low confidence"), None when it answered.
        `top_k` above the number of classes gives them all; below 1 is refused.
        """
        check_top_k(top_k)
        top_k = min(top_k, len(self.class_names))
        feature = self.recipe.feature
        for path in paths:
            try:
                scan = self.scan(path)
                problem = content_problem(scan.info) or (
                    None if scan.framed else too_short_to_frame(feature))
            except AudioclsError as error:
                problem = decode_problem(path, error)
            if problem is not None:
                yield {"path": str(path), "error": problem}
                continue
            probabilities = self.file_probabilities(path, scan)
            values, indices = probabilities.topk(top_k)
            decision = self.decide(probabilities, scan.info.loudness_db)
            yield {"path": str(path), "top": [
                {"label": self.class_names[i], "probability": round(float(v), 4)}
                for v, i in zip(values, indices, strict=True)],
                "label": decision["label"], "reason": decision["reason"],
                "loudness_db": round(scan.info.loudness_db, 1)}


def _batches(items: Iterable[torch.Tensor], size: int) -> Iterator[list[torch.Tensor]]:
    """Yield lists of `size` items in order (the last may be shorter)."""
    batch: list[torch.Tensor] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
