"""Serve SwanLab's local dashboard for the course's runs, and screenshot it headlessly."""

from __future__ import annotations

import errno
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ..errors import AudioclsError

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


def find_log_dir(search_root: str | Path = "outputs") -> Path:
    """Return the most recently written `swanlog` folder below `search_root`."""
    candidates = sorted(Path(search_root).glob("**/swanlog"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise AudioclsError(f"No SwanLab runs under {search_root}/: run `make demo` or a training "
                            "notebook first, or pass --log-dir")
    return candidates[-1]


def check_log_dir(log_dir: str | Path) -> Path:
    """Return `log_dir` if it is a folder; else raise saying which folder to pass instead."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        raise AudioclsError(f"SwanLab log folder {log_dir} does not exist: pass the swanlog folder "
                            "of your runs (e.g. outputs/demo/swanlog), or leave --log-dir out to "
                            "use the newest one under --search")
    return log_dir


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def check_port_free(host: str, port: int, server: str = "dashboard") -> None:
    """Stop unless nothing listens on `host:port`: swanlab watch would quietly take another."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed one's wait is no use
        try:
            probe.bind((host, port))
        except OSError as error:
            taken = error.errno == errno.EADDRINUSE
            why = f"is taken (another {server}?)" if taken else f"cannot be used ({error.strerror})"
            raise AudioclsError(f"--port {port} on {host} {why}: choose another, e.g. --port "
                                f"{free_port()} (free now)") from None


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
