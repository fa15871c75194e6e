"""`make demo`: execute the course's notebooks into executed copies and HTML, with each headline.

`python scripts/run_notebooks.py --out outputs/notebooks` runs the six chapters in
the `cpu` profile on the built-in set (unless AUDIOCLS_DATA is set) and prints a summary.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiocls_utils.config import PROFILES
from audiocls_utils.course import (
    DATA_ENV,
    HEADLINE,
    PROFILE_ENV,
    WIDGETS_ENV,
    WORKDIR_ENV,
    course_root,
    workdir,
)
from audiocls_utils.files import write_bytes

NOTEBOOKS = ("01_dataset_exploration", "02_spectrogram_visualization", "03_baseline_resnet18",
             "04_advanced_resnext", "05_baselines_and_pretrained", "06_your_own_sounds")


@dataclass
class NotebookResult:
    """One executed notebook: where it went, how long it took, and its headline."""

    name: str
    seconds: float
    headline: str
    html: Path


def notebook_headline(notebook: Any) -> str:
    """Return the last `Headline: ...` line a notebook printed, or '' if none."""
    found = ""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                for line in output.get("text", "").splitlines():
                    if line.startswith(HEADLINE):
                        found = line.removeprefix(HEADLINE)
    return found


def run_notebook(path: Path, out_dir: Path, timeout: int = 3600) -> NotebookResult:
    """Execute one notebook in its folder; write the executed copy and its HTML to `out_dir`."""
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])  # no TCP notice
    try:
        client.execute()
    finally:  # a failing notebook still leaves its executed copy, to see where it failed
        out_dir.mkdir(parents=True, exist_ok=True)
        write_bytes(out_dir / path.name, nbformat.writes(notebook).encode())
    seconds = time.perf_counter() - started
    html, _ = HTMLExporter().from_notebook_node(notebook)
    html_path = out_dir / f"{path.stem}.html"
    write_bytes(html_path, html.encode())
    return NotebookResult(path.stem, seconds, notebook_headline(notebook), html_path)


def run_notebooks(paths: Sequence[Path], out_dir: Path, profile: str = "cpu",
                  timeout: int = 3600) -> list[NotebookResult]:
    """Execute notebooks in order in `profile` (static figures), printing each one's headline."""
    os.environ[PROFILE_ENV] = profile
    os.environ[WIDGETS_ENV] = "0"
    if not os.environ.get(DATA_ENV):
        os.environ[DATA_ENV] = "synthetic"
        print(f"Using the built-in dataset (after `audiocls download gtzan`, set {DATA_ENV}=data/gtzan "
              "to run on GTZAN)")
    print(f"Executing {len(paths)} notebooks in the {profile} profile; outputs in "
          f"{os.environ.get(WORKDIR_ENV) or workdir()}", flush=True)
    results = []
    for path in paths:
        print(f"==> {path.name} ...", flush=True)
        result = run_notebook(path, out_dir, timeout)
        print(f"    {result.seconds:.0f} s  {result.headline or '(no headline)'}", flush=True)
        results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Execute the course's notebooks (make demo) and print a summary."""
    parser = argparse.ArgumentParser(description="Execute the course notebooks into HTML.")
    parser.add_argument("--out", type=Path, default=Path("outputs/notebooks"))
    parser.add_argument("--profile", default="cpu", choices=list(PROFILES))
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to run (default: the six chapters, in order)")
    args = parser.parse_args(argv)
    paths = args.notebooks or [course_root() / "notebooks" / f"{n}.ipynb" for n in NOTEBOOKS]
    started = time.perf_counter()
    try:
        results = run_notebooks(paths, args.out, args.profile, args.timeout)
    except Exception as error:  # noqa: BLE001 - one line naming the notebook, not a kernel dump
        last_line = re.sub(r"\x1b\[[0-9;]*m", "", str(error).strip().splitlines()[-1])  # no colours
        print(f"make demo: a notebook failed: {last_line[:300]}\n"
              f"See the executed copy in {args.out}/ for the cell.", file=sys.stderr)
        return 1
    print("\nnotebook                          time  headline")
    for result in results:
        print(f"{result.name:<32} {result.seconds:>5.0f} s  {result.headline}")
    print(f"Total {time.perf_counter() - started:.0f} s. Executed notebooks and HTML in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
