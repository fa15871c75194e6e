"""Models: log-Mels in, one output per class; ImageNet weights from a local cache; never a hang
offline."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import torchvision

from audiocls_utils.devices import pick_device
from audiocls_utils.errors import AudioclsError
from audiocls_utils.models import (
    LogMelToImage,
    count_parameters,
    create_model,
    imagenet_weights_available,
    weights_file,
)


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point TORCH_HOME at an empty folder and forbid network access."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("AUDIOCLS_OFFLINE", "1")
    return tmp_path / "torch"


def _fake_imagenet_file(constant: float) -> None:
    """Write a resnet18 state dict where torch caches the ImageNet file (conv1 set to `constant`)."""
    _, cached = weights_file("resnet18")
    cached.parent.mkdir(parents=True)
    fake = torchvision.models.resnet18()  # stands in for the ImageNet file
    torch.nn.init.constant_(fake.conv1.weight, constant)
    torch.save(fake.state_dict(), cached)


def test_log_mel_segments_in_one_output_per_class_out(torch_home: Path) -> None:
    model = create_model("resnet18", 7, image_size=64, pretrained="no").eval()
    with torch.no_grad():
        assert model(torch.randn(2, 32, 50)).shape == (2, 7)  # (batch, n_mels, frames) -> (batch, 7)
    assert model[1].fc.out_features == 7 and model[1].fc.in_features == 512
    # resnet18's 11,689,512 parameters, less the 1000-way head (512 * 1000 + 1000), plus a
    # 7-way one (512 * 7 + 7): the input step adds none.
    assert count_parameters(model) == 11_689_512 - 513_000 + 3_591 == 11_180_103


def test_log_mel_to_image_standardizes_and_makes_three_equal_channels() -> None:
    log_mel = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(2, 8, 8)
    to_image = LogMelToImage(image_size=8, mean=10.0, std=4.0)
    image = to_image(log_mel)
    assert image.shape == (2, 3, 8, 8)
    # At its own size, bilinear resizing changes nothing: each channel is (x - mean) / std.
    for channel in range(3):
        assert torch.allclose(image[:, channel], (log_mel - 10.0) / 4.0)
    assert to_image(torch.zeros(1, 5, 7)).shape == (1, 3, 8, 8)  # any segment, the set size


def test_the_training_statistics_are_saved_with_the_model_but_never_trained() -> None:
    model = create_model("resnet18", 3, mean=-42.5, std=11.0, pretrained="no")
    state = model.state_dict()
    assert float(state["0.mean"]) == -42.5 and float(state["0.std"]) == 11.0
    trained = {name for name, _ in model.named_parameters()}
    assert "0.mean" not in trained and "0.std" not in trained
    copy = create_model("resnet18", 3, pretrained="no")
    copy.load_state_dict(state)
    assert float(copy[0].mean) == -42.5 and float(copy[0].std) == 11.0


def test_cached_weights_file_is_loaded(torch_home: Path) -> None:
    _fake_imagenet_file(0.125)
    assert imagenet_weights_available("resnet18", "auto")
    model = create_model("resnet18", 3, pretrained="yes")
    assert torch.all(model[1].conv1.weight == 0.125)
    assert model[1].fc.out_features == 3  # the head is new, whatever the file holds


def test_pretrained_no_ignores_a_cached_weights_file(torch_home: Path) -> None:
    _fake_imagenet_file(0.125)
    assert not imagenet_weights_available("resnet18", "no")
    assert not torch.all(create_model("resnet18", 3, pretrained="no")[1].conv1.weight == 0.125)


def test_pretrained_yes_offline_fails_fast_saying_where_to_put_the_file(torch_home: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(AudioclsError) as error:
        create_model("resnet18", 3, pretrained="yes")
    assert time.perf_counter() - started < 5
    assert "resnet18-f37072fd.pth" in str(error.value) and "TORCH_HOME" in str(error.value)
    assert str(torch_home) in str(error.value)


def test_pretrained_auto_offline_trains_from_scratch_and_says_so(
    torch_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = create_model("resnet18", 3, pretrained="auto")
    assert model[1].fc.out_features == 3
    assert "from scratch" in capsys.readouterr().out


def test_unknown_model_and_choice_are_named(torch_home: Path) -> None:
    with pytest.raises(AudioclsError, match="resnet1800"):
        create_model("resnet1800", 3, pretrained="auto")
    with pytest.raises(AudioclsError, match="resnet1800"):
        create_model("resnet1800", 3, pretrained="no")
    with pytest.raises(AudioclsError, match="'maybe'"):
        imagenet_weights_available("resnet18", "maybe")


def test_a_requested_device_is_used_as_given() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():  # checked: one line instead of a CUDA error mid-run
        with pytest.raises(AudioclsError, match="cuda:1"):
            pick_device("cuda:1")
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert pick_device().type == expected


def test_a_damaged_weights_file_is_one_line_naming_it(torch_home: Path) -> None:
    _, cached = weights_file("resnet18")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not a checkpoint")
    with pytest.raises(AudioclsError, match="delete it and run again") as error:
        create_model("resnet18", 3, pretrained="yes")
    assert str(cached) in str(error.value)


def test_a_model_without_an_fc_head_is_refused_by_name(torch_home: Path) -> None:
    with pytest.raises(AudioclsError, match="mobilenet_v3_small has no `fc` head"):
        create_model("mobilenet_v3_small", 3, pretrained="no")


def test_the_weights_server_is_asked_once_per_process_and_never_for_long(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    from audiocls_utils import models

    asked: list[str] = []

    def stalled(request: urllib.request.Request, timeout: float) -> None:
        asked.append(request.full_url)
        time.sleep(5)  # a name lookup on bad Wi-Fi: urlopen's own timeout does not cover it
        raise OSError("no route")

    monkeypatch.setenv("AUDIOCLS_OFFLINE", "0")
    monkeypatch.setattr(models, "ANSWERS", {})
    monkeypatch.setattr(urllib.request, "urlopen", stalled)
    started = time.perf_counter()
    answers = [models.reachable("https://download.example/resnet18.pth", timeout=0.2)
               for _ in range(3)]
    assert answers == [False] * 3 and len(asked) == 1
    assert time.perf_counter() - started < 1.5
    monkeypatch.setenv("AUDIOCLS_OFFLINE", "1")
    assert not models.reachable("https://download.example/other.pth") and len(asked) == 1
