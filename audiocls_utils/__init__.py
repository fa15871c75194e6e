"""audiocls_utils: the helper package of the audiocls course.

Audio clips become log-Mel spectrograms, and ImageNet-style CNNs classify them.
"""

from .audio import describe_audio, load_audio
from .cache import FeatureCache
from .config import FeatureConfig, Recipe, apply_profile, get_recipe
from .data import build_manifest, class_names, make_splits
from .errors import AudioclsError
from .features import LogMel, extract_log_mels
from .models import create_model
from .predict import Predictor
from .train import pick_device, run_experiment, seed_everything

__version__ = "0.1.0"

__all__ = [
    "AudioclsError",
    "FeatureCache",
    "FeatureConfig",
    "LogMel",
    "Predictor",
    "Recipe",
    "__version__",
    "apply_profile",
    "build_manifest",
    "class_names",
    "create_model",
    "describe_audio",
    "extract_log_mels",
    "get_recipe",
    "load_audio",
    "make_splits",
    "pick_device",
    "run_experiment",
    "seed_everything",
]
