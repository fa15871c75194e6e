"""Regenerate the README's pictures from real runs.

    python scripts/readme_figures.py --data outputs/demo/data --swanlog outputs/demo/swanlog

writes docs/images/spectrograms.png (one log-Mel per class of the data set) and
docs/images/dashboard.png (the chart page of the newest run in SwanLab's local dashboard:
curves, test scores, the confusion matrix and the misclassified clips, in headless Chromium).

    python scripts/readme_figures.py --app-model runs/fsdd --app-clip clip.wav

writes docs/images/app.png: `audiocls app` serving that model, with the clip uploaded into the
page by headless Chromium and its answer drawn (needs the app extra). The README's picture shows
the model tests/test_fsdd.py trains (seed 0, run folder runs/fsdd-digits) and
3_nicolas_7.wav, 1_nicolas_7.wav and 4_nicolas_7.wav of ../shared/data/fsdd joined with 0.35 s
of silence after each.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from browser import CHROMIUM_FLAGS, chromium, start_dashboard  # noqa: E402  (scripts/browser.py)

from audiocls_utils.audio import load_audio  # noqa: E402
from audiocls_utils.config import FeatureConfig  # noqa: E402
from audiocls_utils.data import build_manifest  # noqa: E402
from audiocls_utils.engine.commands.dashboard import free_port  # noqa: E402
from audiocls_utils.errors import AudioclsError  # noqa: E402
from audiocls_utils.features import log_mel  # noqa: E402
from audiocls_utils.files import write_bytes  # noqa: E402
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


# Ready when every chart has drawn: no spinner left (audio charts decode their clips first).
LOADED = ("document.querySelectorAll('.chart-container, [class*=chart]').length > 0 && "
          "!document.querySelector('[class*=loading], [class*=spin]')")


def newest_run_url(dashboard: str) -> str:
    """Return the chart page of the newest run `swanlab watch` serves at `dashboard`."""
    with urllib.request.urlopen(f"{dashboard}/api/v1/project", timeout=10) as answer:
        experiments = json.load(answer)["data"]["experiments"]
    if not experiments:
        raise AudioclsError("the SwanLab log folder holds no run: run `make demo-cli` first")
    newest = max(experiments, key=lambda e: e["create_time"])
    return f"{dashboard}/experiment/{newest['id']}/chart"


class DevTools:
    """Drive one headless Chromium tab over the DevTools protocol (websocket-client)."""

    def __init__(self, port: int) -> None:
        import websocket  # websocket-client, installed with Jupyter

        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as a:
                    tab = next(t for t in json.load(a) if t["type"] == "page")
                break
            except (OSError, StopIteration):
                if time.monotonic() > deadline:
                    raise AudioclsError("headless Chromium did not open its DevTools port") from None
                time.sleep(0.3)
        self.socket = websocket.create_connection(tab["webSocketDebuggerUrl"], timeout=60,
                                                  suppress_origin=True)
        self.next_id = 0

    def call(self, method: str, **params: object) -> dict:
        """Send one command and return its result (events in between are skipped)."""
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AudioclsError(f"Chromium refused {method}: {message['error']}")
                return message["result"]

    def wait_for(self, expression: str, timeout: float) -> bool:
        """Poll a JavaScript condition in real time; return whether it came true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
            if answer["result"].get("value") is True:
                return True
            time.sleep(0.5)
        return False


def screenshot_charts(url: str, out: Path, width: int = 1400, scale: float = 0.75,
                      timeout: float = 60.0) -> None:
    """Load a run's chart page in headless Chromium, wait until every chart has drawn, save a PNG
    of the whole page (`width` CSS pixels wide, drawn at `scale`).

    Real time, not --virtual-time-budget: the audio charts decode their clips off the page's clock.
    """
    port = free_port()
    profile = Path(tempfile.mkdtemp(prefix="audiocls-chromium-"))
    browser = subprocess.Popen([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                f"--remote-debugging-port={port}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        tab = DevTools(port)
        tab.call("Page.enable")
        window = {"width": width, "deviceScaleFactor": scale, "mobile": False}
        tab.call("Emulation.setDeviceMetricsOverride", height=1000, **window)
        tab.call("Page.navigate", url=url)
        tab.wait_for(LOADED, timeout)
        # The charts scroll inside a panel: its scrollHeight is the height the page needs.
        height = tab.call("Runtime.evaluate", returnByValue=True, expression=(
            "Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))"))
        tab.call("Emulation.setDeviceMetricsOverride", height=min(4000, height["result"]["value"]),
                 **window)
        if not tab.wait_for(LOADED, timeout):  # the charts draw again at the new size
            print(f"Warning: some charts of {url} were still loading after {timeout:.0f} s")
        time.sleep(1.0)  # let the last chart finish its animation
        shot = tab.call("Page.captureScreenshot", format="png")
        write_bytes(out, base64.b64decode(shot["data"]))
    finally:
        browser.terminate()
        browser.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


# The app has answered: its figure is drawn in the output image.
ANSWERED = "document.querySelectorAll('img[src*=\"/file=\"], img[src*=\"gradio_api/file\"]').length > 0"


def start_app(model: Path, port: int, timeout: float = 120.0) -> subprocess.Popen:
    """Start `audiocls app --model MODEL` on localhost:`port` and wait until it answers."""
    import sys

    server = subprocess.Popen([sys.executable, "-m", "audiocls_utils", "app", "--model", str(model),
                               "--port", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AudioclsError(f"audiocls app --model {model} stopped (run it by hand to see why)")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
            return server
        except OSError:
            time.sleep(0.5)
    server.terminate()
    raise AudioclsError(f"audiocls app did not answer on port {port} within {timeout:.0f} s")


def screenshot_app(url: str, clip: Path, out: Path, width: int = 1400, height: int = 860,
                   timeout: float = 90.0) -> None:
    """Open the app in headless Chromium, put `clip` in its upload field, wait for the answer and
    save a PNG of the page."""
    port = free_port()
    profile = Path(tempfile.mkdtemp(prefix="audiocls-chromium-"))
    browser = subprocess.Popen([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                f"--remote-debugging-port={port}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        tab = DevTools(port)
        tab.call("Page.enable")
        tab.call("DOM.enable")
        tab.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                 deviceScaleFactor=0.75, mobile=False)
        tab.call("Page.navigate", url=url)
        if not tab.wait_for("document.querySelector('input[type=file]') !== null", timeout):
            raise AudioclsError(f"the app at {url} shows no upload field")
        root = tab.call("DOM.getDocument", depth=-1, pierce=True)["root"]["nodeId"]
        field = tab.call("DOM.querySelector", nodeId=root, selector="input[type=file]")["nodeId"]
        tab.call("DOM.setFileInputFiles", nodeId=field, files=[str(clip.resolve())])
        if not tab.wait_for(ANSWERED, timeout):
            raise AudioclsError(f"the app at {url} gave no answer for {clip} within {timeout:.0f} s")
        time.sleep(1.5)  # the image and the label bars finish drawing
        shot = tab.call("Page.captureScreenshot", format="png")
        write_bytes(out, base64.b64decode(shot["data"]))
    finally:
        browser.terminate()
        browser.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    """Parse arguments and write the pictures asked for."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, help="a data set: spectrograms.png")
    parser.add_argument("--swanlog", type=Path, help="a SwanLab log folder: dashboard.png")
    parser.add_argument("--app-model", type=Path, help="a run folder or model.pt: app.png")
    parser.add_argument("--app-clip", type=Path, help="the clip app.png shows classified")
    args = parser.parse_args()
    if not (args.data or args.swanlog or args.app_model):
        parser.error("give --data, --swanlog, or --app-model with --app-clip")
    OUT.mkdir(parents=True, exist_ok=True)
    if args.data:
        spectrogram_grid(args.data, OUT / "spectrograms.png")
        print(f"Wrote {OUT}/spectrograms.png")
    if args.swanlog:
        port = free_port()
        server = start_dashboard(args.swanlog, port)
        try:
            screenshot_charts(newest_run_url(f"http://127.0.0.1:{port}"), OUT / "dashboard.png")
        finally:
            server.terminate()
        print(f"Wrote {OUT}/dashboard.png")
    if args.app_model:
        if not args.app_clip:
            parser.error("--app-model needs --app-clip, the clip to show classified")
        port = free_port()
        server = start_app(args.app_model, port)
        try:
            screenshot_app(f"http://127.0.0.1:{port}/", args.app_clip, OUT / "app.png")
        finally:
            server.terminate()
            server.wait(timeout=30)
        print(f"Wrote {OUT}/app.png")


if __name__ == "__main__":
    main()
