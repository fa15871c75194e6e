"""Models: the right head, ImageNet weights from a local cache, and never a hang offline."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import torchvision

from audiocls_utils.errors import AudioclsError
from audiocls_utils.models import count_parameters, create_model, replace_head, weights_file


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point TORCH_HOME at an empty folder and forbid network access."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("AUDIOCLS_OFFLINE", "1")
    return tmp_path / "torch"


def test_head_has_one_output_per_class(torch_home: Path) -> None:
    model = create_model("resnet18", 7, pretrained="no")
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 7)
    assert count_parameters(model) == 11_180_103


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "efficientnet_b0", "vit_b_16"])
def test_other_torchvision_heads_are_found(name: str) -> None:
    model = torchvision.models.get_model(name)
    replace_head(model, 4)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert last.out_features == 4


def test_cached_weights_file_is_loaded(torch_home: Path) -> None:
    _, cached = weights_file("resnet18")
    cached.parent.mkdir(parents=True)
    fake = torchvision.models.resnet18()  # stands in for the ImageNet file
    torch.nn.init.constant_(fake.conv1.weight, 0.125)
    torch.save(fake.state_dict(), cached)
    model = create_model("resnet18", 3, pretrained="yes")
    assert torch.all(model.conv1.weight == 0.125)
    assert model.fc.out_features == 3


def test_pretrained_yes_offline_fails_fast_saying_where_to_put_the_file(torch_home: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(AudioclsError) as error:
        create_model("resnet18", 3, pretrained="yes")
    assert time.perf_counter() - started < 5
    assert "resnet18-f37072fd.pth" in str(error.value) and "TORCH_HOME" in str(error.value)


def test_pretrained_auto_offline_trains_from_scratch_and_says_so(
    torch_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = create_model("resnet18", 3, pretrained="auto")
    assert model.fc.out_features == 3
    assert "from scratch" in capsys.readouterr().out


def test_unknown_model_is_named(torch_home: Path) -> None:
    with pytest.raises(AudioclsError, match="resnet1800"):
        create_model("resnet1800", 3, pretrained="auto")
