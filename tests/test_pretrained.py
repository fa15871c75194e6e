"""Chapter 05's pretrained models, offline: every model is a tiny random one saved with
`save_pretrained` into a temporary folder and loaded back through the function a learner calls."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tone, write_wav
from torch.utils.data import DataLoader

from audiocls_utils import pretrained
from audiocls_utils.audio import load_audio
from audiocls_utils.data import SegmentDataset
from audiocls_utils.errors import AudioclsError
from audiocls_utils.pretrained import (
    CHECKPOINTS,
    PretrainedClassifier,
    ast_log_mel,
    clip_embeddings,
    embed_clips,
    embed_windows,
    load_pretrained,
    sampling_rate,
    save_pretrained_copies,
    save_standin,
    weights_source,
    zero_shot,
)
from audiocls_utils.train import fit

KINDS = ("ast", "clap", "hubert")


@pytest.fixture(scope="module")
def models_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder like a teacher's download: ast/, clap/ and hubert/, each a save_pretrained copy."""
    folder = tmp_path_factory.mktemp("pretrained")
    for kind in KINDS:
        save_standin(kind, folder / kind)
    return folder


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No folder, an empty Hugging Face cache, no network: where the course's test machines stand."""
    monkeypatch.delenv(pretrained.PRETRAINED_ENV, raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("AUDIOCLS_OFFLINE", "1")
    return tmp_path


@pytest.mark.parametrize("kind", KINDS)
def test_a_folder_of_saved_models_is_loaded_with_its_processor(
        kind: str, models_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import transformers

    model, processor, source = load_pretrained(kind, models_folder)
    model_class, processor_class = pretrained.model_classes(kind)
    assert type(model) is model_class and type(processor) is processor_class
    assert not source.standin and source.path == str(models_folder / kind)
    assert not model.training  # eval mode: no dropout in embeddings
    assert capsys.readouterr().out == f"{kind}: {CHECKPOINTS[kind]} from {models_folder / kind}\n"
    assert isinstance(model, transformers.PreTrainedModel)


def test_the_environment_variable_names_the_folder(models_folder: Path, offline: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pretrained.PRETRAINED_ENV, str(models_folder))
    with weights_source("hubert") as source:
        assert source.path == str(models_folder / "hubert") and not source.standin


def test_without_weights_a_stand_in_is_loaded_says_so_and_leaves_nothing_behind(
        offline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, _, source = load_pretrained("ast", offline / "empty-folder")
    line = capsys.readouterr().out
    assert source.standin and "random stand-in, numbers meaningless" in line
    assert CHECKPOINTS["ast"] in line and str(offline / "empty-folder" / "ast") in line
    assert not Path(source.path).exists()  # the stand-in's temporary folder is gone


def test_the_hugging_face_cache_comes_before_the_stand_in(models_folder: Path, offline: Path) -> None:
    # The cache's own layout: models--org--name/refs/main names a snapshot holding the files.
    repo = offline / "hf-cache" / ("models--" + CHECKPOINTS["hubert"].replace("/", "--"))
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.parent.mkdir(parents=True)
    os.symlink(models_folder / "hubert", snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    model, _, source = load_pretrained("hubert")
    assert not source.standin and "Hugging Face cache" in source.description
    assert Path(source.path).resolve() == (models_folder / "hubert").resolve()


def test_an_unknown_model_is_named() -> None:
    with pytest.raises(AudioclsError, match="'wav2vec'"), weights_source("wav2vec"):
        pass


def test_stand_ins_are_the_same_every_time(tmp_path: Path) -> None:
    first, second = save_standin("clap", tmp_path / "a"), save_standin("clap", tmp_path / "b")
    model_class, _ = pretrained.model_classes("clap")
    a, b = model_class.from_pretrained(first), model_class.from_pretrained(second)
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    assert all(torch.equal(x, y) for x, y in pairs)


def test_a_teachers_copies_load_from_their_folder(models_folder: Path, offline: Path) -> None:
    repo = offline / "hf-cache" / ("models--" + CHECKPOINTS["ast"].replace("/", "--"))
    (repo / "snapshots").mkdir(parents=True)
    os.symlink(models_folder / "ast", repo / "snapshots" / "feed")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("feed")
    [saved] = save_pretrained_copies(offline / "room", kinds=("ast",))
    assert saved == offline / "room" / "ast" and (saved / "config.json").is_file()
    _, _, source = load_pretrained("ast", offline / "room")
    assert source.path == str(saved) and not source.standin


def test_copies_cannot_be_made_offline(offline: Path) -> None:
    with pytest.raises(AudioclsError, match="cannot be downloaded from here"):
        save_pretrained_copies(offline / "room", kinds=("hubert",))
    assert not (offline / "room").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_embeddings_have_one_row_per_clip_and_repeat_exactly(kind: str, models_folder: Path,
                                                           tmp_path: Path) -> None:
    model, processor, _ = load_pretrained(kind, models_folder)
    paths = [write_wav(tmp_path / f"{i}.wav", tone(220.0 * (i + 1), seconds=1.5)) for i in range(3)]
    first = clip_embeddings(kind, model, processor, paths, window_seconds=10.0)
    again = clip_embeddings(kind, model, processor, paths, window_seconds=10.0)
    assert first.shape == (3, model.config.projection_dim if kind == "clap" else model.config.hidden_size)
    assert torch.isfinite(first).all() and torch.equal(first, again)
    assert not torch.allclose(first[0], first[2])  # different clips, different embeddings


def test_long_clips_are_cut_into_the_models_windows_and_averaged(
        models_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, processor, _ = load_pretrained("hubert", models_folder)
    rate = sampling_rate(processor)
    path = write_wav(tmp_path / "long.wav", tone(330.0, seconds=25.0, sample_rate=rate), rate)
    seen = []

    def recording(kind, model, processor, windows):  # noqa: ANN001, ANN202
        seen.append([len(w) for w in windows])
        return embed_windows(kind, model, processor, windows)

    monkeypatch.setattr(pretrained, "embed_windows", recording)
    embedding = clip_embeddings("hubert", model, processor, [path], window_seconds=10.0)
    assert seen == [[10 * rate] * 3]  # 0-10 s, 10-20 s and the last 10 s (15-25 s)
    waveform = load_audio(path, rate)
    by_hand = embed_windows("hubert", model, processor, [waveform[s:s + 10 * rate].numpy()
                                                         for s in (0, 10 * rate, 15 * rate)]).mean(dim=0)
    torch.testing.assert_close(embedding[0], by_hand)


def test_audio_at_another_rate_is_resampled_never_misread(models_folder: Path, tmp_path: Path) -> None:
    model, processor, _ = load_pretrained("ast", models_folder)
    low = write_wav(tmp_path / "8k.wav", tone(440.0, seconds=2.0, sample_rate=8000), 8000, subtype="FLOAT")
    resampled = write_wav(tmp_path / "16k.wav", load_audio(low, 16000).numpy(), 16000, subtype="FLOAT")
    from_8k = clip_embeddings("ast", model, processor, [low], 10.24)
    torch.testing.assert_close(from_8k, clip_embeddings("ast", model, processor, [resampled], 10.24))
    misread = embed_windows("ast", model, processor, [load_audio(low, 8000).numpy()])  # 8 kHz taken for 16
    assert not torch.allclose(from_8k, misread, atol=1e-3)
    with pytest.raises(ValueError, match="8000"):  # the processor itself refuses a wrong rate
        processor(load_audio(low, 8000).numpy(), sampling_rate=8000)


def test_zero_shot_is_a_softmax_over_scaled_cosine_similarities(models_folder: Path, tmp_path: Path) -> None:
    model, processor, _ = load_pretrained("clap", models_folder)
    paths = [write_wav(tmp_path / f"{i}.wav", tone(f, seconds=1.0)) for i, f in enumerate((200.0, 2000.0))]
    audio = clip_embeddings("clap", model, processor, paths, 10.0)
    classes = ["low hum", "high whistle", "noise"]
    probabilities = zero_shot(model, processor, audio, classes, "This is a {}.")
    assert probabilities.shape == (2, 3)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(2))
    with torch.no_grad():  # a second computation: the model's own text tower, numpy cosines
        inputs = processor(text=[f"This is a {c}." for c in classes], return_tensors="pt", padding=True)
        output = model.get_text_features(**inputs)
        text = getattr(output, "pooler_output", output).numpy()
    a = audio.numpy() / np.linalg.norm(audio.numpy(), axis=1, keepdims=True)
    t = text / np.linalg.norm(text, axis=1, keepdims=True)
    logits = float(model.logit_scale_a.detach().exp()) * a @ t.T
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities.numpy(), expected, rtol=1e-4, atol=1e-6)
    assert torch.equal(probabilities, zero_shot(model, processor, audio, classes, "This is a {}."))


def test_ast_input_of_a_long_clip_is_its_windows_side_by_side(models_folder: Path, tmp_path: Path) -> None:
    _, extractor, _ = load_pretrained("ast", models_folder)
    path = write_wav(tmp_path / "long.wav", tone(440.0, seconds=25.0))
    features = ast_log_mel(extractor, path)
    assert features.shape == (128, 3 * 1024)  # three 10.24 s windows, the last one padded
    first = extractor(load_audio(path, 16000)[: 16384 * 10].numpy(), sampling_rate=16000,
                      return_tensors="pt")["input_values"][0].T
    torch.testing.assert_close(features[:, :1024], first)


def test_ast_fine_tunes_with_chapter_03s_fit(models_folder: Path) -> None:
    model, _, _ = load_pretrained("ast", models_folder)
    torch.manual_seed(0)
    inputs = [torch.randn(128, 1024) + 2 * (i % 2) for i in range(8)]  # two classes, shifted
    loader = DataLoader(SegmentDataset(inputs, [i % 2 for i in range(8)], 1024, train=True), batch_size=4)
    val = DataLoader(SegmentDataset(inputs[:4], [0, 1, 0, 1], 1024, train=False), batch_size=4)
    classifier = PretrainedClassifier(model, num_classes=2)
    before = classifier.encoder.embeddings.patch_embeddings.projection.weight.clone()
    optimizer = torch.optim.AdamW([{"params": classifier.encoder.parameters(), "lr": 1e-3},
                                   {"params": classifier.head.parameters(), "lr": 1e-2}])
    history, best_epoch = fit(classifier, loader, val, torch.nn.CrossEntropyLoss(), optimizer, 2,
                              torch.device("cpu"))
    assert len(history) == 2 and 1 <= best_epoch <= 2
    assert classifier(inputs[0][None]).shape == (1, 2)
    assert not torch.equal(before, classifier.encoder.embeddings.patch_embeddings.projection.weight)


def test_embed_clips_averages_the_windows_of_each_clip() -> None:
    class Mean(torch.nn.Module):
        def forward(self, segments: torch.Tensor) -> torch.Tensor:
            return segments.mean(dim=2)  # (batch, n_mels): each band's mean over the window

    clips = [torch.arange(12.0).repeat(2, 1), torch.full((2, 4), 5.0)]  # (n_mels=2, frames)
    windows = SegmentDataset(clips, [0, 1], num_frames=4, train=False, hop_frames=4)
    embeddings = embed_clips(Mean(), DataLoader(windows, batch_size=2), torch.device("cpu"))
    # clip 0: windows 0-3, 4-7, 8-11 with means 1.5, 5.5, 9.5 -> 5.5; clip 1: 5
    torch.testing.assert_close(embeddings, torch.tensor([[5.5, 5.5], [5.0, 5.0]]))
