"""`make demo-cli`: the whole pipeline from the command line on the built-in dataset.

generate -> prepare -> train (cpu profile) -> evaluate -> predict, then the headline figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from audiocls_utils.engine.commands.cli import main as audiocls


def step(title: str, *args: str) -> None:
    """Run one `audiocls` command, echoing it, and stop the demo if it fails."""
    print(f"\n==> {title}\n$ audiocls {' '.join(args)}", flush=True)
    started = time.perf_counter()
    status = audiocls(list(args))
    if status != 0:
        sys.exit(status)
    print(f"({time.perf_counter() - started:.0f} s)", flush=True)


def run_demo(out: Path, profile: str = "cpu") -> dict:
    """Run every step into `out` and return the test metrics."""
    data, run = out / "data", out / "baseline"
    step("Generate the built-in synthetic dataset (GTZAN-shaped, not GTZAN)",
         "synth", "--out", str(data), "--clips-per-class", "30", "--seconds", "6",
         "--artists-per-class", "6")
    step("Check every clip and split it (no artist on both sides)",
         "prepare", "--data-dir", str(data), "--out", str(out / "manifest.csv"), "--split", "group")
    step(f"Train the baseline recipe ({profile} profile)",
         "train", "--data-dir", str(data), "--split", "group", "--recipe", "baseline",
         "--profile", profile, "--output-dir", str(run), "--tracking", "local")  # for `make dashboard`
    step("Evaluate the saved model on the held-out test clips",
         "evaluate", "--model", str(run / "model.pt"), "--data-dir", str(data), "--split", "group")
    examples = [str(sorted((data / "genres" / genre).glob("*.wav"))[-1])
                for genre in ("classical", "metal", "reggae")]
    step("Predict the genre of three files", "predict", "--model", str(run / "model.pt"),
         *examples, "--top-k", "3")
    return json.loads((run / "metrics.json").read_text())["test"]


def main() -> None:
    """Parse arguments, run the demo, print the headline figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu16", "full"])
    args = parser.parse_args()
    started = time.perf_counter()
    test = run_demo(args.out, args.profile)
    print(f"\nTest accuracy {test['accuracy']:.3f}, macro-F1 {test['macro_f1']:.3f} on "
          f"{test['num_clips']} clips of artists never seen in training.")
    print(f"Outputs in {args.out}/ (model, metrics, history, confusion matrix); SwanLab runs in "
          f"{args.out}/swanlog, in SwanLab's local mode (view with `make dashboard`; the local "
          "dashboard is deprecated upstream, `swanlab sync` of an offline run is the maintained path).")
    print(f"Demo took {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
