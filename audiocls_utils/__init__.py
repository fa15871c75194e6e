"""audiocls_utils: the code the audiocls course writes, chapter by chapter, kept in one place.

The core (what a learner reads): `audio` (reading files), `features` (log-Mels), `data`
(manifest, splits, the segment Dataset), `models` (the CNN and its head), `train` (the loop,
evaluation, the schedule), `augment`, `predict`, `metrics`, `plots`, with `config` for recipes
and profiles. The engine (`audiocls_utils.engine`: cache, experiment runner, CLI, downloads,
export, synthetic data) runs that code at scale and is imported only where it is used.
"""

from .audio import describe_audio, load_audio
from .config import FeatureConfig, Recipe, apply_profile, get_recipe
from .data import SegmentDataset, build_manifest, class_names, make_splits
from .devices import pick_device
from .errors import AudioclsError
from .features import LogMel, extract_log_mels
from .models import create_model
from .predict import Predictor
from .train import evaluate, fit, seed_everything, train_one_epoch

__version__ = "0.1.0"

__all__ = [
    "AudioclsError",
    "FeatureConfig",
    "LogMel",
    "Predictor",
    "Recipe",
    "SegmentDataset",
    "__version__",
    "apply_profile",
    "build_manifest",
    "class_names",
    "create_model",
    "describe_audio",
    "evaluate",
    "extract_log_mels",
    "fit",
    "get_recipe",
    "load_audio",
    "make_splits",
    "pick_device",
    "seed_everything",
    "train_one_epoch",
]
