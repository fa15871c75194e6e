"""A training process killed mid-run resumes from its last checkpoint and ends where an
uninterrupted run ends, taking over the lock and removing the temporary files the killed run left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _train(data: Path, out: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "audiocls_utils", "train", "--data-dir", str(data),
               "--profile", "smoke", "--output-dir", str(out), "--tracking", "disabled",
               "--seed", "5", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "CI": "1"})


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_result(tmp_path: Path, tone_dataset: Path) -> None:
    whole = _train(tone_dataset, tmp_path / "whole")
    assert whole.wait(timeout=600) == 0, whole.stdout.read()

    killed = _train(tone_dataset, tmp_path / "killed")
    last = tmp_path / "killed" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 600
    while not last.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert killed.poll() is None, "training finished before it could be killed"
    killed.send_signal(signal.SIGKILL)  # no chance to clean up, like a power cut
    killed.wait(timeout=60)
    assert not (tmp_path / "killed" / "metrics.json").exists()
    leftovers = [p.name for p in (tmp_path / "killed").rglob("*") if p.suffix == ".tmp"]
    assert all(name.startswith(".") for name in leftovers)  # only hidden temp files, never trusted
    assert (tmp_path / "killed" / "run.lock").exists()  # kill -9: no chance to remove it

    resumed = _train(tone_dataset, tmp_path / "killed", "--resume")
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    assert "Resuming from" in output
    assert f"Taking over {tmp_path / 'killed' / 'run.lock'}" in output  # its pid no longer runs
    assert not (tmp_path / "killed" / "run.lock").exists()
    assert not [p for p in (tmp_path / "killed").rglob("*") if p.suffix == ".tmp"]
    metrics = [json.loads((tmp_path / run / "metrics.json").read_text())
               for run in ("whole", "killed")]
    assert metrics[1]["test"] == metrics[0]["test"]
    assert metrics[1]["best_epoch"] == metrics[0]["best_epoch"]
