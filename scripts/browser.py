"""Headless Chromium and a background SwanLab dashboard, for the README's pictures and the
browser tests (repo tooling: the `audiocls` package never starts a browser)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from audiocls_utils.engine.commands.dashboard import check_log_dir, check_port_free
from audiocls_utils.errors import AudioclsError

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


def start_dashboard(log_dir: str | Path, port: int, host: str = "127.0.0.1",
                    timeout: float = 60.0) -> subprocess.Popen:
    """Start `swanlab watch` in the background and wait until it answers on `host:port`."""
    log_dir = check_log_dir(log_dir)
    check_port_free(host, port)
    command = [sys.executable, "-m", "swanlab", "watch", str(log_dir), "--host", host,
               "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    url = f"http://{host}:{port}/api/v1/project"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AudioclsError(f"swanlab watch exited early: {output.strip()[-300:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return process
        except OSError:
            time.sleep(0.5)
    process.terminate()
    raise AudioclsError(f"swanlab watch did not answer on {host}:{port} within {timeout:.0f} s")


def chromium() -> str:
    """Return the path of a Chromium binary, or raise saying how to install one."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise AudioclsError("Chromium is not installed (Debian/Ubuntu: apt-get install chromium)")


def render_page(url: str, screenshot: str | Path | None = None, wait_ms: int = 8000,
                size: tuple[int, int] = (1400, 900), timeout: float = 90.0) -> str:
    """Load `url` in headless Chromium; return the rendered HTML and optionally save a PNG."""
    profile = Path(tempfile.mkdtemp(prefix="audiocls-chromium-"))
    base = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
            f"--virtual-time-budget={wait_ms}", f"--window-size={size[0]},{size[1]}"]
    try:
        dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True,
                             timeout=timeout, check=True).stdout
        if screenshot is not None:
            subprocess.run([*base, f"--screenshot={Path(screenshot).resolve()}", url],
                           capture_output=True, timeout=timeout, check=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return dom
