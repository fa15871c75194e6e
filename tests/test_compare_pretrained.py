"""benchmarks/compare_pretrained.py: chapter 05's approaches on a dataset folder, offline."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import compare_pretrained  # noqa: E402


def test_every_approach_gets_a_row_and_stand_ins_are_marked(
        tmp_path: Path, tone_dataset: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("AUDIOCLS_PRETRAINED", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(sys, "argv", [
        "compare_pretrained.py", "--data-dir", str(tone_dataset), "--split", "random", "--profile",
        "smoke", "--seeds", "0", "--approaches", "statistics-logistic", "resnet18-probe",
        "clap-zero-shot", "hubert-probe", "--out", str(tmp_path / "out")])
    compare_pretrained.main()
    rows = pd.read_csv(tmp_path / "out" / "results.csv").set_index("approach")
    assert [rows.index[i] for i in (0, 1, 3)] == ["statistics-logistic", "resnet18-probe", "hubert-probe"]
    assert rows.index[2].startswith("clap-zero-shot '")  # the template chosen on validation
    assert rows["test_clips"].nunique() == 1 and rows["test_clips"].iloc[0] > 0
    # Three tones two octaves apart: their MFCC statistics separate them completely.
    assert rows.loc["statistics-logistic", "test_accuracy"] == 1.0
    assert rows.loc["statistics-logistic", "weights"] == "none"
    for approach in rows.index[2:]:
        assert "random stand-in" in rows.loc[approach, "weights"]
    assert rows.loc[rows.index[2], "trained"] == 0  # zero-shot trains nothing
    assert "| statistics-logistic | 0 |" in capsys.readouterr().out
