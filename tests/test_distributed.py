"""DistributedDataParallel under torchrun: 2 CPU processes (gloo) train as one and agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPO

from audiocls_utils.data import build_manifest, make_splits, save_manifest


def torchrun(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict[int, str]]:
    """Run `torchrun --standalone --nproc_per_node=2 ARGS`; return the result and each rank's stdout."""
    logs = tmp_path / "logs"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "--log-dir", str(logs), "--redirects", "3", *args],
        capture_output=True, text=True, env=env, timeout=300,
    )
    stdout = {rank: "".join(p.read_text() for p in logs.glob(f"*/attempt_0/{rank}/stdout.log"))
              for rank in (0, 1)}
    if result.returncode != 0:
        errors = "".join(p.read_text()[-3000:] for p in logs.glob("*/attempt_0/*/stderr.log"))
        pytest.fail(f"torchrun failed:\n{result.stderr[-2000:]}\n{errors}")
    return result, stdout


@pytest.mark.slow
def test_two_cpu_ranks_train_one_model_and_only_rank_0_reports(
    tmp_path: Path, tone_dataset: Path
) -> None:
    manifest = make_splits(build_manifest(tone_dataset, progress=False)[0], "random")
    save_manifest(manifest, tmp_path / "manifest.csv")
    out = tmp_path / "run"
    _, stdout = torchrun(tmp_path, "-m", "audiocls_utils", "train", "--manifest",
                         str(tmp_path / "manifest.csv"), "--profile", "smoke", "--output-dir",
                         str(out), "--tracking", "disabled", "--device", "cpu", "--cache-dir",
                         str(tmp_path / "cache"))
    # Rank 1 trained (the weights checksums of both ranks were compared) but printed nothing.
    assert stdout[0].count("All 2 ranks agree: weights checksum") == 1
    assert stdout[0].count("Test accuracy") == 1 and "x 2 ranks" in stdout[0]
    assert stdout[1] == ""
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["device"] == "cpu"
    # Every test clip scored once, whichever rank scored it.
    assert metrics["test"]["num_clips"] == (pd.read_csv(out / "manifest.csv")["split"] == "test").sum()
    assert pd.read_csv(out / "history.csv")["epoch"].tolist() == [1, 2]
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints", "confusion_matrix.png", "history.csv", "manifest.csv", "metrics.json",
        "model.pt", "recipe.json", "run.json"]
    used = pd.read_csv(out / "manifest.csv")  # the smoke profile's 8 clips per class and split
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == len(used) == 33


@pytest.mark.slow
def test_ranks_that_drift_apart_are_caught(tmp_path: Path) -> None:
    script = tmp_path / "drift.py"
    script.write_text(textwrap.dedent("""
        import torch, torch.distributed as dist
        from audiocls_utils.errors import AudioclsError
        from audiocls_utils.engine.experiment.distributed import check_ranks_agree, start_distributed
        ranks, _, _ = start_distributed(torch.device("cpu"))
        model = torch.nn.Linear(3, 2)
        torch.nn.init.constant_(model.weight, 0.5)
        torch.nn.init.constant_(model.bias, 0.25)
        check_ranks_agree(model)  # equal weights: no complaint
        with torch.no_grad():
            model.bias.fill_(float(ranks.rank))
        try:
            check_ranks_agree(model)
        except AudioclsError as error:
            print(f"caught: {error}")
        dist.destroy_process_group()
    """))
    _, stdout = torchrun(tmp_path, str(script))
    for rank in (0, 1):
        assert "caught: DDP ranks ended with different weights" in stdout[rank]
