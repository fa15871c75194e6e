"""Measure the peak memory of `audiocls predict` on long files: it must not grow with the file.

    python benchmarks/bench_memory.py                      # 2 h mono 22,050 Hz; 1 h 6-channel 96 kHz
    python benchmarks/bench_memory.py --mono-hours 0.5 --multi-hours 0.1 --workdir /tmp/bench

Writes, under a scratch folder of --workdir, a model file (ResNet18 with random weights: memory
does not depend on what the weights are) and 16-bit wav files of generated sound (a chirp over
noise): one long mono file at 22,050 Hz and one 6-channel file at 96 kHz (4.1 GB for an hour).
Then runs `audiocls predict` on each in a fresh process and prints its peak resident memory
(the largest RSS of that process, from getrusage), its wall time and its output line. The
scratch folder is deleted at the end unless --keep. Not a timed test: figures depend on the
machine; what matters is that the peak stays near that of a 30 s clip.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Run in a child: its RUSAGE_CHILDREN peak is the predict process's own (ru_maxrss is in KiB).
MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"{peak:.0f} {seconds:.1f} {done.returncode}")
print((done.stdout + done.stderr).strip().splitlines()[-1] if (done.stdout + done.stderr).strip() else "")
"""


def write_model(path: Path) -> None:
    """Write a model file as `audiocls train` does, with untrained ResNet18 weights."""
    from audiocls_utils.config import get_recipe
    from audiocls_utils.files import save_torch
    from audiocls_utils.models import create_model
    from audiocls_utils.predict import model_bundle

    recipe = get_recipe("baseline")
    model = create_model(recipe.model, 10, recipe.image_size, pretrained="no")
    num_frames = recipe.feature.seconds_to_frames(recipe.segment_seconds)
    save_torch(model_bundle(model, recipe, [f"class{i}" for i in range(10)], num_frames), path)


def write_long_wav(path: Path, seconds: float, sample_rate: int, channels: int) -> None:
    """Write `seconds` of a slow chirp over noise, 16-bit, a minute at a time (never whole)."""
    rng = np.random.default_rng(0)
    total = int(seconds * sample_rate)
    with sf.SoundFile(str(path), "w", sample_rate, channels, subtype="PCM_16") as file:
        for start in range(0, total, 60 * sample_rate):
            t = np.arange(start, min(total, start + 60 * sample_rate)) / sample_rate
            wave = 0.3 * np.sin(2 * np.pi * (200 + 5 * t / 60) * t)  # one pitch per minute
            block = wave[:, None] + 0.05 * rng.standard_normal((t.size, channels))
            file.write(block.astype(np.float32))


def measure(model: Path, clip: Path) -> tuple[float, float, int, str]:
    """Return predict's peak RSS (MiB), wall time (s), exit status and last output line."""
    command = [sys.executable, "-c", MEASURE, sys.executable, "-m", "audiocls_utils", "predict",
               "--model", str(model), str(clip), "--device", "cpu"]
    result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
    figures, _, last = result.stdout.partition("\n")
    peak, seconds, status = figures.split()
    return float(peak), float(seconds), int(status), last.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mono-hours", type=float, default=2.0)
    parser.add_argument("--multi-hours", type=float, default=1.0)
    parser.add_argument("--stereo-hours", type=float, default=0.0,
                        help="a 48 kHz stereo file (issue 22 measured 3 h)")
    parser.add_argument("--short-seconds", type=float, default=30.0,
                        help="a short mono clip measured first, for comparison")
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="bench-memory-", dir=args.workdir))
    try:
        model = scratch / "model.pt"
        write_model(model)
        cases = [("short mono 22,050 Hz", args.short_seconds / 3600, 22050, 1),
                 ("mono 22,050 Hz", args.mono_hours, 22050, 1),
                 ("6-channel 96 kHz", args.multi_hours, 96000, 6),
                 ("stereo 48 kHz", args.stereo_hours, 48000, 2)]
        print(f"{'file':<24} {'length':>9} {'size':>9} {'peak RSS':>10} {'time':>8}  output")
        for name, hours, rate, channels in cases:
            if hours <= 0:
                continue
            clip = scratch / f"{rate}hz-{channels}ch.wav"
            write_long_wav(clip, hours * 3600, rate, channels)
            peak, seconds, status, last = measure(model, clip)
            size = clip.stat().st_size / 2**30
            clip.unlink()
            print(f"{name:<24} {hours * 60:>7.1f} m {size:>7.2f} G {peak:>7.0f} MiB {seconds:>6.0f} s"
                  f"  {'exit ' + str(status) + ': ' if status else ''}{last[-60:]}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"({time.perf_counter() - start:.0f} s in all)")
