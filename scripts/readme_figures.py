"""Regenerate the README's pictures from real runs.

    python scripts/readme_figures.py --data outputs/demo/data --swanlog outputs/demo/swanlog

writes docs/images/spectrograms.png (one log-Mel per class of the data set) and
docs/images/dashboard.png (SwanLab's local dashboard of the runs, in headless Chromium).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from audiocls_utils.audio import load_audio  # noqa: E402
from audiocls_utils.config import FeatureConfig  # noqa: E402
from audiocls_utils.data import build_manifest  # noqa: E402
from audiocls_utils.engine.dashboard import free_port, render_page, start_dashboard  # noqa: E402
from audiocls_utils.features import log_mel  # noqa: E402
from audiocls_utils.plots import plot_spectrogram  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def spectrogram_grid(data_dir: Path, out: Path) -> None:
    """Plot the first clip of each class as a log-Mel spectrogram, in a 2-column grid."""
    manifest, _ = build_manifest(data_dir, progress=False)
    firsts = manifest.groupby("label").head(1)
    config = FeatureConfig()
    rows = (len(firsts) + 1) // 2
    figure, axes = plt.subplots(rows, 2, figsize=(12, 2.2 * rows))
    for ax, row in zip(axes.flat, firsts.itertuples(), strict=False):
        features = log_mel(load_audio(row.path, config.sample_rate), config)
        plot_spectrogram(features, config, title=row.label, ax=ax)
    figure.tight_layout()
    figure.savefig(out, dpi=80)


def main() -> None:
    """Parse arguments and write both pictures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--swanlog", type=Path, required=True)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    spectrogram_grid(args.data, OUT / "spectrograms.png")
    port = free_port()
    server = start_dashboard(args.swanlog, port)
    try:
        render_page(f"http://127.0.0.1:{port}/", screenshot=OUT / "dashboard.png")
    finally:
        server.terminate()
    print(f"Wrote {OUT}/spectrograms.png and {OUT}/dashboard.png")


if __name__ == "__main__":
    main()
