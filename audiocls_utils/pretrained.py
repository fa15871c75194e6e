"""Transfer learning: a frozen CNN's embeddings, and audio-pretrained models from Hugging Face.

Chapter 05 writes `embed_clips`, `load_pretrained`, `embed_windows`, `clip_embeddings`,
`zero_shot`, `ast_log_mel` and `PretrainedClassifier`; this is that code. The rest decides where
weights come from, in this order: a folder of downloaded models ($AUDIOCLS_PRETRAINED/<kind>, or
the `folder` argument), the Hugging Face cache, the hub itself; and where none of them has the
weights (no internet, as on the course's test machines), a tiny randomly initialised model of
the same classes, saved with `save_pretrained` and loaded back the same way, so every cell runs
and says that its numbers mean nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .audio import load_audio
from .errors import AudioclsError
from .features import window_starts
from .models import reachable

PRETRAINED_ENV = "AUDIOCLS_PRETRAINED"  # a folder holding ast/, clap/, hubert/ (save_pretrained copies)
# The checkpoints chapter 05 uses: AST fine-tuned on AudioSet, LAION's CLAP (no fusion), and the
# Hugging Face audio course's DistilHuBERT (speech, self-supervised).
CHECKPOINTS = {
    "ast": "MIT/ast-finetuned-audioset-10-10-0.4593",
    "clap": "laion/clap-htsat-unfused",
    "hubert": "ntu-spml/distilhubert",
}
STANDIN = "random stand-in, numbers meaningless"


def model_classes(kind: str) -> tuple[type, type]:
    """Return the transformers model and processor classes of `kind` (ast, clap or hubert)."""
    import transformers as tf

    classes = {"ast": (tf.ASTModel, tf.ASTFeatureExtractor),
               "clap": (tf.ClapModel, tf.ClapProcessor),
               "hubert": (tf.HubertModel, tf.Wav2Vec2FeatureExtractor)}
    if kind not in classes:
        raise AudioclsError(f"Unknown pretrained model {kind!r}; choose one of {sorted(classes)}")
    return classes[kind]


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's weights come from: what `from_pretrained` is given, and a line saying so."""

    kind: str
    path: str  # a folder, or a hub name
    description: str
    standin: bool


def _hub_snapshot(checkpoint: str) -> str | None:
    """Return the Hugging Face cache's folder for `checkpoint`, or None if it is not cached."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(checkpoint, "config.json")
    return os.path.dirname(found) if isinstance(found, str) else None


def _hub_reachable(checkpoint: str) -> bool:
    """Return True if the hub answers for `checkpoint` within 2 s (never when told to stay offline)."""
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return False
    return reachable(f"https://huggingface.co/{checkpoint}/resolve/main/config.json")


@contextlib.contextmanager
def weights_source(kind: str, folder: str | Path | None = None) -> Iterator[WeightsSource]:
    """Yield where to load `kind` from: a local folder, the hub cache, the hub, else a stand-in."""
    model_classes(kind)  # names an unknown kind
    checkpoint = CHECKPOINTS[kind]
    folder = folder or os.environ.get(PRETRAINED_ENV)
    local = Path(folder).expanduser() / kind if folder else None
    if local is not None and (local / "config.json").is_file():
        yield WeightsSource(kind, str(local), f"{checkpoint} from {local}", False)
        return
    snapshot = _hub_snapshot(checkpoint)
    if snapshot:
        yield WeightsSource(kind, snapshot, f"{checkpoint} from the Hugging Face cache", False)
        return
    if _hub_reachable(checkpoint):
        yield WeightsSource(kind, checkpoint, f"{checkpoint} from the Hugging Face hub", False)
        return
    missing = f"no {local}" if local is not None else f"${PRETRAINED_ENV} not set"
    with tempfile.TemporaryDirectory(prefix=f"audiocls-{kind}-") as temporary:
        save_standin(kind, temporary)
        yield WeightsSource(kind, temporary, f"{STANDIN} ({checkpoint} not reachable, {missing}; "
                                             "docs/workshop.md says how to download it)", True)


def save_pretrained_copies(folder: str | Path, kinds: tuple[str, ...] = tuple(CHECKPOINTS)) -> list[Path]:
    """Download each model (or take it from the Hugging Face cache) and save it to folder/<kind>.

    A teacher runs this once on a machine with internet; learners then set AUDIOCLS_PRETRAINED to
    the folder (a USB stick, a shared drive) and load from it with no network.
    """
    from transformers.utils import logging

    logging.disable_progress_bar()
    saved = []
    for kind in kinds:
        model_class, processor_class = model_classes(kind)
        with weights_source(kind, folder=None) as source:
            if source.standin:
                raise AudioclsError(f"{CHECKPOINTS[kind]} cannot be downloaded from here (no internet, "
                                    "or HF_HUB_OFFLINE / AUDIOCLS_OFFLINE set): run this on a machine "
                                    "that reaches huggingface.co")
            target = Path(folder).expanduser() / kind
            model_class.from_pretrained(source.path).save_pretrained(target)
            processor_class.from_pretrained(source.path).save_pretrained(target)
        print(f"{kind}: {CHECKPOINTS[kind]} saved to {target}")
        saved.append(target)
    return saved


def save_standin(kind: str, folder: str | Path) -> Path:
    """Write a tiny randomly initialised model of `kind`, with the real processor settings, to `folder`.

    The processor is the checkpoint's own (AST: 16 kHz, 1024 frames of 128 Mel bands; CLAP:
    48 kHz, 10 s; HuBERT: 16 kHz waveforms); only the network is small. Seeded: the same every time.
    """
    import transformers as tf

    folder = Path(folder)
    if kind == "ast":
        config = tf.ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64, frequency_stride=16, time_stride=16)
        processor = tf.ASTFeatureExtractor()
    elif kind == "hubert":
        config = tf.HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embeddings=16,
                                 num_conv_pos_embedding_groups=4)
        processor = tf.Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True)
    elif kind == "clap":
        tokenizer = byte_tokenizer(folder / "tokenizer-source")
        text = tf.ClapTextConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64, projection_dim=16,
                                 max_position_embeddings=80)
        audio = tf.ClapAudioConfig(hidden_size=32, patch_embeds_hidden_size=16, depths=[1, 1],
                                   num_attention_heads=[2, 2], window_size=4, patch_size=16,
                                   patch_stride=16, projection_dim=16)
        config = tf.ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(),
                               projection_dim=16)
        processor = tf.ClapProcessor(feature_extractor=tf.ClapFeatureExtractor(truncation="rand_trunc"),
                                     tokenizer=tokenizer)
    else:
        model_classes(kind)  # raises, naming the choices
    model_class, _ = model_classes(kind)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = model_class(config)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def byte_tokenizer(folder: Path):  # noqa: ANN202 - a transformers RobertaTokenizer
    """Return a RoBERTa tokenizer with one token per byte (no merges): CLAP's tokenizer, made offline."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import RobertaTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", *sorted(ByteLevel.alphabet())]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return RobertaTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def sampling_rate(processor) -> int:  # noqa: ANN001 - a transformers processor or feature extractor
    """Return the sample rate a processor expects (CLAP's processor keeps it in its feature extractor)."""
    return getattr(processor, "feature_extractor", processor).sampling_rate


def count_all_parameters(model: nn.Module) -> int:
    """Return the number of parameters, trainable or not."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def embed_clips(model, loader, device):  #@save
    """Return each clip's embedding, (clips, features): the mean of its windows' outputs."""
    model.eval()
    num_clips = len(loader.dataset.log_mels)
    sums, counts = None, torch.zeros(num_clips)
    for segments, _, clips in loader:
        outputs = model(segments.to(device)).float().cpu()  # (batch, features)
        if sums is None:
            sums = torch.zeros(num_clips, outputs.shape[1])
        sums.index_add_(0, clips, outputs)
        counts.index_add_(0, clips, torch.ones(len(clips)))
    return sums / counts.unsqueeze(1)


def load_pretrained(kind, folder=None, device="cpu"):  #@save
    """Load a Hugging Face audio model and its processor, and print which weights it got."""
    from transformers.utils import logging

    logging.disable_progress_bar()  # no "Loading weights" bars in the notebook
    model_class, processor_class = model_classes(kind)
    with weights_source(kind, folder) as source:  # a folder, the hub, or a tiny random stand-in
        processor = processor_class.from_pretrained(source.path)
        model = model_class.from_pretrained(source.path).eval().to(device)
    print(f"{kind}: {source.description}")
    return model, processor, source


@torch.no_grad()
def embed_windows(kind, model, processor, windows):  #@save
    """Return one embedding per window, (windows, dim); `windows` are 1-D arrays at the model's rate."""
    rate = sampling_rate(processor)
    if kind == "clap":  # the audio tower's projection, the space CLAP shares with text
        inputs = processor(audio=windows, sampling_rate=rate, return_tensors="pt").to(model.device)
        output = model.get_audio_features(**inputs)
        return getattr(output, "pooler_output", output).cpu()  # transformers 5: an output object
    output = model(**processor(windows, sampling_rate=rate, return_tensors="pt").to(model.device))
    if kind == "ast":
        return output.pooler_output.cpu()  # (windows, 768): the mean of AST's two summary tokens
    return output.last_hidden_state.mean(dim=1).cpu()  # HuBERT: the mean over its 20 ms frames


def clip_embeddings(kind, model, processor, paths, window_seconds):  #@save
    """Return one embedding per clip, (clips, dim): its windows' embeddings averaged."""
    rate = sampling_rate(processor)
    per_clip = []
    for path in paths:
        waveform = load_audio(path, rate)  # resampled to the model's rate, never misread
        size = min(int(window_seconds * rate), len(waveform))  # a short clip is one window
        windows = [waveform[start:start + size].numpy()
                   for start in window_starts(len(waveform), size, size)]  # the last ends at the end
        per_clip.append(embed_windows(kind, model, processor, windows).mean(dim=0))
    return torch.stack(per_clip)


@torch.no_grad()
def zero_shot(model, processor, audio_embeddings, class_names, template):  #@save
    """Return CLAP's class probabilities per clip, (clips, classes): how close each clip's audio
    embedding is to the text embedding of one sentence per class."""
    prompts = [template.format(name) for name in class_names]
    inputs = processor(text=prompts, return_tensors="pt", padding=True).to(model.device)
    output = model.get_text_features(**inputs)
    text = nn.functional.normalize(getattr(output, "pooler_output", output), dim=-1)  # (classes, dim)
    audio = nn.functional.normalize(audio_embeddings.to(model.device), dim=-1)  # (clips, dim)
    logits = model.logit_scale_a.exp() * audio @ text.T  # scaled cosine similarities
    return logits.softmax(dim=1).cpu()


def ast_log_mel(extractor, path, window_seconds=10.24):  #@save
    """Return AST's input for a whole clip as (n_mels, frames): its 10.24 s windows side by side."""
    rate = extractor.sampling_rate
    waveform = load_audio(path, rate)
    size = int(window_seconds * rate)
    windows = [waveform[start:start + size].numpy() for start in range(0, len(waveform), size)]
    features = extractor(windows, sampling_rate=rate, return_tensors="pt")["input_values"]
    return torch.cat(list(features), dim=0).T  # (windows * 1024, 128) -> (128, frames)


class PretrainedClassifier(nn.Module):  #@save
    """AST with a new linear head: AST's input segments (batch, n_mels, frames) -> class logits."""

    def __init__(self, encoder, num_classes):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, num_classes)  # trained from scratch

    def forward(self, segments):
        features = segments.transpose(1, 2)  # AST takes (batch, frames, n_mels)
        return self.head(self.encoder(input_values=features).pooler_output)
